target "default" {
  tags = ["a"]
  args = { A = "1" }
}
target "default" {
  args = { B = "2" }
}
