variable "TAG" { default = "latest" }
target "default" { tags = ["app:${TAG}"] }
