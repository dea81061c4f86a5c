target "build" {
  name = "build-${os}-${v}"
  matrix = {
    os = ["linux", "windows"]
    v = ["1", "2"]
  }
  args = { OS = os, V = v }
}
