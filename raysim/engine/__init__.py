"""The deterministic discrete-event engine: a block of simulated nodes in one process."""
