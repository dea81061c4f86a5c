variable "TAG" { default = "hcl" }
target "app" {
  tags = ["app:${TAG}"]
  args = { FROM = "hcl" }
}
