target "default" {
  tags = ["x"
}
