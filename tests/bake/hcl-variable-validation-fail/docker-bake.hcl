variable "PORT" {
  default = 80
  validation {
    condition = PORT < 10
    error_message = "PORT must be small"
  }
}
target "default" {}
