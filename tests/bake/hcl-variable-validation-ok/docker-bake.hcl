variable "PORT" {
  default = 80
  validation {
    condition = PORT > 0
    error_message = "PORT must be positive"
  }
}
target "default" { args = { PORT = PORT } }
