target "base" { entitlements = ["network.host"] }
target "default" {
  inherits = ["base"]
  entitlements = ["security.insecure", "network.host"]
}
