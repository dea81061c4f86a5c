target "default" {
  cache-from = [{ type = "registry", ref = "r/a:cache" }, "r/b:cache,r/c:cache", ""]
  cache-to = [{ type = "registry", ref = "r/a:cache", mode = "max" }]
}
