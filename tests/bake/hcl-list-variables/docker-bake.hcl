variable "TAG" {
  default = "latest"
  description = "The tag"
}
variable "N" {
  type = number
  default = 3
}
variable "L" {
  type = list(string)
  default = ["a", "b"]
}
variable "EMPTY" {}
variable "NULLY" { type = string }
target "default" {}
