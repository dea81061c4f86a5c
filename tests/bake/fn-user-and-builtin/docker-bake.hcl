function "image" {
  params = [name, tags]
  result = [for t in tags : "${lower(name)}:${t}"]
}
target "default" {
  tags = image("MyApp", ["1", "latest"])
  labels = { count = length(image("x", ["a", "b", "c"])) }
}
