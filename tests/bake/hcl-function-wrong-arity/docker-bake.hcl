function "one" {
  params = [a]
  result = a
}
target "default" { args = { X = one("a", "b") } }
