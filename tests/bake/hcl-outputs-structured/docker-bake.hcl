target "default" {
  output = [
    { type = "image", name = "x/y", push = true },
    "type=registry,name=r/z",
    "./dist",
  ]
}
