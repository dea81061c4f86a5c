variable "TAG" {
  default = "latest"
  description = "The tag"
}
variable "OBJ" { default = { b = 1, a = "x" } }
variable "B" {
  type = bool
  default = true
}
target "default" {}
