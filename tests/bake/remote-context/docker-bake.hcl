target "default" {
  context = "https://github.com/docker/buildx.git#master"
}
