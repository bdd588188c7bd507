"""What ``ctx.emit`` accepts: one check shared by the engine and :mod:`raysim.testing`.

An observation has a ``name`` (a non-empty string), a ``value`` and optional ``peer`` (a node
id, -1 for none) and ``ref`` (any 64-bit integer, -1 for none; e.g. a message id). A value
is one of

- a ``bool``, an ``int`` (64-bit), a ``float``,
- a short ``str`` (at most :data:`MAX_STR` characters),
- a sequence of ints (a vector, e.g. a vector clock; a list, tuple or integer numpy array).

numpy scalars count as their Python types. Anything else raises ``TypeError`` (a bad type)
or ``ValueError`` (a bad value) inside the handler, where the engine turns it into a
``ProtocolError`` naming run, node, time and event.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

MAX_STR = 64  # characters of a string observation
_I64 = (-(2**63), 2**63 - 1)

Value = bool | int | float | str | tuple[int, ...]


def _int64(x: int, what: str) -> int:
    if not _I64[0] <= x <= _I64[1]:
        raise ValueError(f"{what} {x} does not fit in 64 bits")
    return x


def check_value(value: Any) -> Value:
    """``value`` as stored: bool, int, float, str or a tuple of ints; raises if not allowed."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a numpy scalar (or 0-d array): its Python value
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return _int64(int(value), "observation value")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        if len(value) > MAX_STR:
            raise ValueError(f"a string observation value has at most {MAX_STR} characters, "
                             f"got {len(value)}")
        return value
    if isinstance(value, Sequence) or hasattr(value, "__array__"):
        items = list(value)
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
            raise TypeError("a vector observation value must hold only ints")
        return tuple(_int64(int(v), "vector element") for v in items)
    raise TypeError(
        f"observation value of type {type(value).__name__} is not allowed; "
        "use an int, float, bool, short str, or a sequence of ints"
    )


def check_observation(
    name: Any, value: Any, peer: Any, ref: Any, n_nodes: int
) -> tuple[str, Value, int, int]:
    """Check one ``emit`` call; returns ``(name, value, peer, ref)`` as they are stored."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"observation name must be a non-empty str, got {name!r}")
    if not isinstance(peer, numbers.Integral) or isinstance(peer, bool):
        raise TypeError(f"observation peer must be a node id (int), got {peer!r}")
    if not -1 <= int(peer) < n_nodes:
        raise ValueError(f"observation peer {peer} is not a node id below {n_nodes} (or -1)")
    if not isinstance(ref, numbers.Integral) or isinstance(ref, bool):
        raise TypeError(f"observation ref must be an int, got {ref!r}")
    return name, check_value(value), int(peer), _int64(int(ref), "observation ref")


__all__ = ["MAX_STR", "Value", "check_observation", "check_value"]
