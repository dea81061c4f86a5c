target "default" {
  shm-size = "lots"
}
