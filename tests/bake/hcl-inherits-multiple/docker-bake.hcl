target "one" {
  args = { A = "1" }
  tags = ["one"]
}
target "two" {
  args = { B = "2" }
  labels = { l = "two" }
}
target "default" { inherits = ["one", "two"] }
