"""The catalogue of protocols: the built-in families (one sub-package each) and the registry.

Importing this package registers the built-in protocols; :func:`lookup` and :func:`available`
read the registry of :mod:`raysim.api.protocol`, which user modules fill with
``@raysim.register``.
"""

from collections.abc import Iterable

from raysim.api.protocol import ProtocolSpec, registered
from raysim.protocols import causality, chord, gossip


def lookup(name: str) -> ProtocolSpec:
    """The protocol registered as ``name``; KeyError listing the known names otherwise."""
    reg = registered()
    try:
        return reg[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(reg))}") from None


def available() -> Iterable[ProtocolSpec]:
    """All registered protocols, sorted by name."""
    reg = registered()
    return [reg[k] for k in sorted(reg)]


__all__ = ["available", "causality", "chord", "gossip", "lookup"]
