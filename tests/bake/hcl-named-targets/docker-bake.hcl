target "a" { tags = ["a"] }
target "b" { tags = ["b"] }
target "c" { tags = ["c"] }
