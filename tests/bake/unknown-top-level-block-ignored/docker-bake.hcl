something "x" { a = 1 }
target "default" { tags = ["ok"] }
