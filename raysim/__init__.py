"""raysim: deterministic, fault-injecting simulation of distributed-systems algorithms on Ray."""

from raysim._version import __version__

__all__ = ["__version__"]
