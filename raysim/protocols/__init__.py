"""Built-in protocols; importing this package registers them by name."""

from raysim.protocols import averaging, gossip

__all__ = ["averaging", "gossip"]
