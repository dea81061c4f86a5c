target "one" {
  tags = ["one:hcl"]
}
