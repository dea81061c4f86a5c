target "default" { tags = "x" }
