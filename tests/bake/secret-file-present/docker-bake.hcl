target "default" {
  secret = ["id=s,src=secret.txt"]
}
