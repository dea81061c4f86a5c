target "base" {
  tags = ["base:1"]
  args = { V = "7" }
}
target "default" {
  tags = [for t in target.base.tags : "${t}-derived"]
  args = { FROM_BASE = target.base.args.V }
}
