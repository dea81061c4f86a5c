target "default" { network = "host" }
