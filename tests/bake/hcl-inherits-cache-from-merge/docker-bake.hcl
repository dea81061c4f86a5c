target "base" { cache-from = ["type=registry,ref=r/base"] }
target "default" {
  inherits = ["base"]
  cache-from = ["type=registry,ref=r/app", "type=registry,ref=r/base"]
  cache-to = ["type=inline"]
}
