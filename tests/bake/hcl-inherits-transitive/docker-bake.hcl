target "a" { args = { A = "a" } }
target "b" {
  inherits = ["a"]
  args = { B = "b" }
}
target "c" {
  inherits = ["b"]
  args = { C = "c", A = "override" }
}
group "default" { targets = ["c"] }
