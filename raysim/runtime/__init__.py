"""Runtime backends: the engine's shards stepped in one process or as Ray actors."""
