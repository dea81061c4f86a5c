variable "V" { default = "b" }
