target "base" {
  dockerfile = "base.Dockerfile"
  tags = ["base"]
}
target "default" {
  contexts = { base = "target:base" }
}
