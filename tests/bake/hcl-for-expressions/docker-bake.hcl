variable "NAMES" { default = ["a", "b", "c"] }
target "default" {
  tags = [for n in NAMES : "user/${n}:latest" if n != "b"]
  args = { for i, n in NAMES : "K_${n}" => i }
}
