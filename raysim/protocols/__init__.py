"""Built-in protocols; importing this package registers them by name."""

from raysim.protocols import averaging, chord, gossip  # noqa: F401  (chord registers "chord")

__all__ = ["averaging", "gossip"]
