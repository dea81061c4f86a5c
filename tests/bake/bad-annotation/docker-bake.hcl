target "default" {
  annotations = ["noequals"]
}
