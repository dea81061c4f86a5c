target "app" { description = "The app" }
target "db" {}
group "all" { targets = ["db", "app"] }
