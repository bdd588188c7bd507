"""Protocols built to survive Byzantine nodes (registering them on import)."""

from raysim.protocols.byzantine import bracha

__all__ = ["bracha"]
