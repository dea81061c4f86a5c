variable "ENV" { default = "prod" }
target "default" {
  tags = ENV == "prod" ? ["app:prod"] : ["app:dev"]
  args = { DEBUG = ENV != "prod" ? "1" : "0" }
  no-cache = ENV == "dev"
}
