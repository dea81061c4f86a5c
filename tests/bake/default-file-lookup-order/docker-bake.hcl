target "default" {
  args = { H = "1" }
}
