variable "N" { default = 3 }
target "default" { args = { N = N * 2 } }
