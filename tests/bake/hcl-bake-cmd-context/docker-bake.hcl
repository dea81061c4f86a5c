target "default" { context = BAKE_CMD_CONTEXT }
