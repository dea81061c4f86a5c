target "app" {
  matrix = { t = ["a", "b"] }
}
