group "default" {
  targets = ["a"]
}
