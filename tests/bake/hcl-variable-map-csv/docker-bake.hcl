variable "ARGS" {
  type = map(string)
  default = {}
}
target "default" { args = ARGS }
