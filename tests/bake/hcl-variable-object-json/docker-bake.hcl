variable "CFG" {
  type = object({name = string, port = number})
  default = {name = "x", port = 80}
}
target "default" { args = { NAME = CFG.name, PORT = CFG.port } }
