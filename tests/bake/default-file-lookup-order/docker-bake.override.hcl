target "default" {
  tags = ["override"]
}
