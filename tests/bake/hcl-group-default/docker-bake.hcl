group "default" {
  targets = ["a", "b"]
}
target "a" { tags = ["a"] }
target "b" { tags = ["b"] }
