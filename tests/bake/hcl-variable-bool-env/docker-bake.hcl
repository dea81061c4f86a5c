variable "PUSH" { default = false }
target "default" { tags = PUSH ? ["pushed"] : ["local"] }
