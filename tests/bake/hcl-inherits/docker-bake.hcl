target "base" {
  dockerfile = "base.Dockerfile"
  args = { A = "1", B = "2" }
  platforms = ["linux/amd64"]
}
target "default" {
  inherits = ["base"]
  args = { B = "3" }
  tags = ["x"]
}
