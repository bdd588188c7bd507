"""What ``ctx.emit`` accepts: the rules the engine applies, for :mod:`raysim.testing`.

An observation has a ``name`` (a non-empty string), a ``value`` and optional ``peer`` and
``ref`` (64-bit ints, -1 for none; e.g. a node id and a message id). A value is one of

- a ``bool``, an ``int`` (64-bit), a ``float`` (not NaN),
- a ``str`` of at most :data:`MAX_STR` characters,
- a vector of ints: a list or tuple of ints, or a 1-D integer (or bool) numpy array.

numpy scalars count as their Python types. Anything else raises ``TypeError`` (a bad type)
or ``ValueError`` (a bad value) inside the handler, where the engine turns it into a
``ProtocolError`` naming run, node, time and event. These are the engine's rules
(``raysim.engine.observe``), restated here in the API layer so that the fake contexts,
which may not import the engine, check exactly what a run would.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

MAX_STR = 256  # characters of a str observation value (the log schema's limit)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ALLOWED = "an int, a float (not NaN), a bool, a str or a sequence of ints"

Value = bool | int | float | str | tuple[int, ...]


def check_int(x: Any, what: str) -> int:
    """``x`` as a Python int in the int64 range (bools are not ints here)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"emit: {what} must be an int, got {type(x).__name__} {x!r}")
    x = int(x)
    if not INT64_MIN <= x <= INT64_MAX:
        raise ValueError(f"emit: {what} {x} is outside the int64 range")
    return x


def _vector(items: Any) -> tuple[int, ...]:
    out = []
    for x in items:
        if not isinstance(x, numbers.Integral):
            raise TypeError(f"emit: a vector value holds ints only; got {type(x).__name__} {x!r}")
        x = int(x)
        if not INT64_MIN <= x <= INT64_MAX:
            raise ValueError("emit: a vector entry is outside the int64 range")
        out.append(x)
    return tuple(out)


def check_value(value: Any) -> Value:
    """``value`` as stored (bool, int, float, str or a tuple of ints); raises if not allowed."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        if not isinstance(value, bool) and getattr(value, "ndim", 0) != 0:
            raise TypeError(f"emit: value must be {ALLOWED}")
        return bool(value)
    if isinstance(value, float) or (isinstance(value, numbers.Real)
                                    and not isinstance(value, numbers.Integral)):
        value = float(value)
        if math.isnan(value):
            raise ValueError("emit: value NaN is not an observation (emit nothing, or a sentinel)")
        return value
    if isinstance(value, numbers.Integral):
        return check_int(value, "value")
    if isinstance(value, str):
        if len(value) > MAX_STR:
            raise ValueError(f"emit: a str value has at most {MAX_STR} characters, "
                             f"got {len(value)}")
        return value
    if hasattr(value, "dtype") and hasattr(value, "ndim"):  # a numpy array
        if value.ndim == 1 and value.dtype.kind in "iub":
            return _vector(value.tolist())
        raise TypeError(f"emit: value must be {ALLOWED}; got a {value.dtype} array of shape "
                        f"{value.shape}")
    if isinstance(value, list | tuple):
        return _vector(value)
    raise TypeError(f"emit: value must be {ALLOWED}; got {type(value).__name__} {value!r}"[:300])


def check_observation(name: Any, value: Any, peer: Any, ref: Any) -> tuple[str, Value, int, int]:
    """Check one ``emit`` call; returns ``(name, value, peer, ref)`` as they are stored."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"emit: the name must be a non-empty str, got {name!r}")
    return name, check_value(value), check_int(peer, "peer"), check_int(ref, "ref")


__all__ = ["MAX_STR", "Value", "check_int", "check_observation", "check_value"]
