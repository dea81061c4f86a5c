# From this directory: `kiln bake --print` shows the resolved targets, and `kiln bake --load`
# builds both variants concurrently, uploading the shared context once.
variable "TAG" {
  default = "latest"
}

group "default" {
  targets = ["hello"]
}

target "hello" {
  name    = "hello-${lang}"
  context = "."
  matrix = {
    lang = ["en", "fr"]
  }
  args = {
    GREETING = lang == "fr" ? "bonjour" : "hello"
  }
  tags = ["hello:${lang}-${TAG}"]
}
