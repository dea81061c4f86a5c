variable "N" { default = 2 }
target "default" {
  tags = ["n${N}", "h${N / 4}", "m${N * 1.5}", "b${N > 1}"]
  args = { NUM = 7, F = 2.5, T = true }
}
