target "default" {
  attest = [
    { type = "sbom", generator = "docker/scout-sbom-indexer:1" },
    "type=provenance,disabled=true",
    { type = "sbom", disabled = true },
  ]
}
