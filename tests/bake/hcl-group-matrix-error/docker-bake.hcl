group "default" {
  targets = ["a"]
  matrix = { x = ["1"] }
}
target "a" {}
