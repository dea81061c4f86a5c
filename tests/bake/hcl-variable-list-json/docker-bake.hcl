variable "TAGS" {
  type = list(string)
  default = []
}
target "default" { tags = TAGS }
