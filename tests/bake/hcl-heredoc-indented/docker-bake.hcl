variable "BASE" { default = "alpine:3" }
target "default" {
  dockerfile-inline = <<-EOT
    FROM ${BASE}
    RUN echo "$${HOME}"
  EOT
}
