target "default" { tags = [NOPE] }
