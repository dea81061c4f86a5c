target "default" {
  args = { A = "$${notvar}", B = "%%{notdirective}" }
  labels = { l = "plain" }
}
