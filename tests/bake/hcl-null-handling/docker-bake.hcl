variable "N" {
  type = string
  default = null
}
target "default" {
  dockerfile = N
  args = { A = N == null ? "isnull" : "set" }
}
