target "app" {
  name = "app-${tgt}"
  matrix = { tgt = ["foo", "bar"] }
  target = tgt
  tags = ["user/app:${tgt}"]
}
group "default" { targets = ["app"] }
