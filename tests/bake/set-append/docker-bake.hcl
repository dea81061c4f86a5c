target "default" {
  tags = ["a"]
  platforms = ["linux/amd64"]
  cache-from = ["r/a"]
}
