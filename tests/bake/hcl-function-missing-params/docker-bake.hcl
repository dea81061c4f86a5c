function "bad" {
  result = "x"
}
target "default" {}
