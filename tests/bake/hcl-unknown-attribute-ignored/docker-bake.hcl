group "default" {
  targets = ["a"]
  bogus = 1
}
target "a" {
  bogus = "x"
  tags = ["ok"]
  nested {
    x = 1
  }
}
