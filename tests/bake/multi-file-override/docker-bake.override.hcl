target "app" {
  tags = ["app:2"]
  args = { B = "2" }
  cache-from = ["r/b"]
}
