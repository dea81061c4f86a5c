variable "EMPTY" {}
target "default" { args = { E = "x${EMPTY}y" } }
