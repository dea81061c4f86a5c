target "default" {
  context = "."
  dockerfile = "Dockerfile"
  tags = ["user/app:latest"]
}
