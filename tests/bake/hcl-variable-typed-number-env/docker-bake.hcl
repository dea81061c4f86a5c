variable "N" {
  type = number
  default = 1
}
target "default" { args = { N = N + 1 } }
