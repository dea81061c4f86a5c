REPO = "user/app"
target "default" { tags = ["${REPO}:1"] }
