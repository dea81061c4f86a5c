target "app" {
  name = "app-${item.name}"
  matrix = {
    item = [{ name = "a", port = 1 }, { name = "b", port = 2 }]
  }
  args = { PORT = item.port }
}
