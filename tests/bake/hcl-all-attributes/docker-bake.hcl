target "default" {
  description = "all of them"
  context = "./ctx/../ctx2/"
  dockerfile = "Dockerfile.custom"
  target = "final"
  args = { A = "1", N = null }
  labels = { "org.opencontainers.image.title" = "x" }
  tags = ["a:1", "a:1", "a:2"]
  platforms = ["linux/amd64", "linux/arm64"]
  cache-from = ["user/app:cache", "type=local,src=cachedir"]
  cache-to = ["type=local,dest=cachedir2,mode=max"]
  output = ["type=image,name=a,push=false", "type=local,dest=out"]
  attest = ["type=sbom", "type=provenance,mode=max"]
  secret = ["id=tok,env=TOKEN"]
  pull = true
  no-cache = true
  no-cache-filter = ["build", "build"]
  network = "none"
  shm-size = "2g"
  ulimits = ["nofile=1024:2048"]
  extra-hosts = { "myhost" = "10.0.0.1" }
  annotations = ["index:org.opencontainers.image.authors=me", "manifest:a=b"]
  entitlements = ["security.insecure"]
  contexts = { alpine = "docker-image://alpine:3", empty = "" }
}
