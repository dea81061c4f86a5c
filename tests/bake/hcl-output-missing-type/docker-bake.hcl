target "default" { output = [{ dest = "x" }] }
