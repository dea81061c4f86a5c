variable "TAG" { default = "latest" }
variable "REPO" { default = "user/app" }
target "default" { tags = ["${REPO}:${TAG}"] }
