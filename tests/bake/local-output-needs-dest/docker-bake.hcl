target "default" {
  output = ["type=local"]
}
