target "app-a" {}
target "app-b" {}
target "other" {}
