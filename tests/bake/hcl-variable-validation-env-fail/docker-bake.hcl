variable "ENV" {
  default = "dev"
  validation {
    condition = ENV == "dev" || ENV == "prod"
    error_message = "bad env"
  }
}
target "default" { args = { ENV = ENV } }
