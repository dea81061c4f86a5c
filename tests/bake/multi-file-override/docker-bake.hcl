target "app" {
  tags = ["app:1"]
  args = { A = "1" }
  cache-from = ["r/a"]
}
