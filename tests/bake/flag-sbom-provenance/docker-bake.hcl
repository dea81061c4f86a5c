target "default" { attest = ["type=provenance,mode=min"] }
