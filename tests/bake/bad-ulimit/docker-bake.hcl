target "default" {
  ulimits = ["bogus=1"]
}
