target "default" {
  args = { X = "1" }
}
