function "tag" {
  params = [repo, version]
  result = "${repo}:${version}"
}
function "join2" {
  params = [sep]
  variadic_params = parts
  result = "%{ for i, p in parts }%{ if i > 0 }${sep}%{ endif }${p}%{ endfor }"
}
target "default" {
  tags = [tag("user/app", "1.0"), tag("user/app", "latest")]
  args = { J = join2("-", "a", "b", "c") }
}
