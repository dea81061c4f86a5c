variable "K" { default = "dyn" }
target "default" { args = { (K) = "v", plain = "p" } }
