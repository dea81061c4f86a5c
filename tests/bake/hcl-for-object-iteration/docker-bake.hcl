variable "M" { default = { z = "1", a = "2" } }
target "default" { tags = [for k, v in M : "${k}-${v}"] }
