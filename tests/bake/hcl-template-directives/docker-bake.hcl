variable "LIST" { default = ["a", "b"] }
target "default" {
  args = {
    JOINED = "%{ for x in LIST }${x};%{ endfor }"
    COND = "%{ if LIST[0] == "a" }yes%{ else }no%{ endif }"
  }
}
