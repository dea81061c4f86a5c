target "base" { platforms = ["linux/amd64", "linux/386"] }
target "default" {
  platforms = ["linux/amd64", "linux/arm64"]
  contexts = { base = "target:base" }
}
