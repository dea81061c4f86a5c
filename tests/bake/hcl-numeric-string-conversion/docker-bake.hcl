variable "V" { default = "5" }
target "default" { args = { SUM = V + 1, EQ = V == 5, EQS = V == "5" } }
