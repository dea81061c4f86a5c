target "a" {}
target "b" { output = ["type=local,dest=out"] }
target "c" { output = ["type=image,name=x"] }
group "default" { targets = ["a", "b", "c"] }
