variable "NAMES" { default = ["web", "api"] }
variable "VERSION" { default = "1.2.3" }
target "default" {
  tags = [for n in NAMES : format("%s/%s:%s", "user", n, VERSION)]
  args = {
    JOINED = join(",", NAMES)
    UPPER  = upper(VERSION)
    MAJOR  = split(".", VERSION)[0]
    LEN    = length(NAMES)
    REPL   = replace(VERSION, ".", "-")
    FIRST  = coalesce("", "fallback")
    HAS    = contains(NAMES, "api")
  }
}
