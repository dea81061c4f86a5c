target "app" {
  tags = ["app:1"]
  args = { A = "1" }
}
target "db" { tags = ["db:1"] }
group "default" { targets = ["app", "db"] }
