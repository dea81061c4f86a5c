target "default" {
  dockerfile = ""
}
