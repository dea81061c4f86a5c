target "default" { output = ["type=registry,name=y", "type=image,name=z,push=true"] }
