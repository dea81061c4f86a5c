group "default" { targets = ["g1", "c"] }
group "g1" { targets = ["a", "g2"] }
group "g2" { targets = ["b"] }
target "a" {}
target "b" {}
target "c" {}
