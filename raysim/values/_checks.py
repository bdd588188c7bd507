"""Argument checks shared by the value types."""

from __future__ import annotations

import operator


def non_negative_int(value: object, what: str) -> int:
    """``value`` as a non-negative Python int, or a TypeError/ValueError naming ``what``."""
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{what} must be >= 0, got {n}")
    return n
