function "inc" {
  params = [n]
  result = n + 1
}
function "inc2" {
  params = [n]
  result = inc(inc(n))
}
target "default" { args = { N = inc2(40) } }
