target "_base" { description = "hidden" }
target "app" {
  description = "The app"
  inherits = ["_base"]
}
target "db" {}
group "all" {
  description = "Everything"
  targets = ["db", "app"]
}
group "nodesc" { targets = ["db"] }
