target "default" {
  secret = [
    { id = "a", env = "A_ENV" },
    "type=env,id=b,env=B_ENV",
    "id=a,env=OTHER",
  ]
}
