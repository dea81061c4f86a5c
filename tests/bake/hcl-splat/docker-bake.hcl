variable "ITEMS" {
  default = [{ name = "a" }, { name = "b" }]
}
target "default" { tags = ITEMS[*].name }
