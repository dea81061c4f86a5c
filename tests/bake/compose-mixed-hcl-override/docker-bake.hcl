target "web" {
  args = { B = "from-hcl", C = "from-hcl" }
  tags = ["web:hcl"]
  platforms = ["linux/amd64"]
}
target "extra" {
  inherits = ["api"]
  target = "extra"
}
