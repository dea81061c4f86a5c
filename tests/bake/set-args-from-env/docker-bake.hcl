target "default" { args = { A = "file" } }
