target "default" {
  secret = ["id=s,src=missing.txt"]
}
