target "app" {
  name = "app-${t}"
  matrix = { t = ["only"] }
}
