variable "V" { default = "a" }
target "default" { tags = ["${V}"] }
