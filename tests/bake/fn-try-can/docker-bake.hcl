variable "OBJ" { default = { a = "1" } }
target "default" {
  args = {
    A = try(OBJ.b, "missing")
    B = can(OBJ.a) ? "yes" : "no"
    C = can(OBJ.zzz) ? "yes" : "no"
    D = try(OBJ.a, "x")
  }
}
