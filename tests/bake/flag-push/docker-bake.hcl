target "a" { output = ["type=image,name=x"] }
target "b" {}
target "c" { output = ["type=registry,name=y"] }
group "default" { targets = ["a", "b", "c"] }
