"""Observation values: the checks ``emit`` makes inside a handler, and their log columns.

``ctx.emit`` (per-node) calls :func:`check_value` and :func:`check_int` before it records
anything, so a bad argument raises inside the handler and becomes a
:class:`~raysim.errors.ProtocolError` naming run, node, time and event like any handler
error. The columnar :meth:`BatchShardContext.emit` calls :func:`batch_values`. Both end as
:class:`~raysim.log.eventlog.ObsValues` (the typed columns of :mod:`raysim.log.schema`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from raysim.log.eventlog import ObsValues
from raysim.log.schema import MAX_STR, V_BOOL, V_FLOAT, V_INT, V_STR, V_VEC

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ALLOWED = "an int, a float (not NaN), a bool, a str or a sequence of ints"


def check_int(x: Any, what: str) -> int:
    """``x`` as a Python int in the int64 range, or a TypeError/ValueError naming ``what``."""
    if type(x) is not int:
        if isinstance(x, np.integer) or (isinstance(x, int) and not isinstance(x, bool)):
            x = int(x)
        else:
            raise TypeError(f"emit: {what} must be an int, got {type(x).__name__} {x!r}")
    if not INT64_MIN <= x <= INT64_MAX:
        raise ValueError(f"emit: {what} {x} is outside the int64 range")
    return x


def check_name(name: Any) -> None:
    """An observation name is a non-empty str of at most MAX_STR characters."""
    if type(name) is not str or not name or len(name) > MAX_STR:
        raise TypeError(
            f"emit: the name must be a non-empty str (<= {MAX_STR} chars), got {name!r}"
        )


def check_value(value: Any) -> tuple[Any, int]:
    """A per-node observation value, normalised, and its type code; TypeError/ValueError if bad.

    Floats come back as float, ints and bools as themselves, strs as themselves and vectors as
    an int64 numpy array.
    """
    t = type(value)
    if t is float or isinstance(value, np.floating):
        value = float(value)
        if math.isnan(value):
            raise ValueError("emit: value NaN is not an observation (emit nothing, or a sentinel)")
        return value, V_FLOAT
    if t is bool or isinstance(value, np.bool_):
        return bool(value), V_BOOL
    if t is int or isinstance(value, np.integer):
        return check_int(value, "value"), V_INT
    if t is str:
        if len(value) > MAX_STR:
            raise ValueError(
                f"emit: a str value has at most {MAX_STR} characters, got {len(value)}"
            )
        return value, V_STR
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and (value.dtype.kind in "iu" or (value.dtype.kind == "b")):
            return _vector(value.tolist()), V_VEC
        raise TypeError(f"emit: value must be {ALLOWED}; got a {value.dtype} array of shape "
                        f"{value.shape}")
    if isinstance(value, list | tuple):
        return _vector(value), V_VEC
    raise TypeError(f"emit: value must be {ALLOWED}; got {t.__name__} {value!r}"[:300])


def _vector(items: Sequence[Any]) -> np.ndarray:
    for x in items:
        if type(x) is not int and not isinstance(x, int | np.integer):
            raise TypeError(
                f"emit: a vector value holds ints only; got {type(x).__name__} {x!r}"[:300]
            )
    try:
        return np.array(items, dtype=np.int64).reshape(-1)
    except OverflowError:
        raise ValueError("emit: a vector entry is outside the int64 range") from None


def per_node_values(values: list[Any], codes: list[int]) -> ObsValues:
    """Columns of per-node observation values (already checked and normalised)."""
    n = len(values)
    if not any(codes):
        return ObsValues.floats(np.array(values, dtype=np.float64))
    vtype = np.array(codes, dtype=np.int8)
    num = np.full(n, np.nan)
    ints = np.zeros(n, dtype=np.int64)
    strs: list[str | None] | None = None
    vecs: list[np.ndarray | None] | None = None
    for i, (v, c) in enumerate(zip(values, codes, strict=True)):
        if c == V_FLOAT:
            num[i] = v
        elif c in (V_INT, V_BOOL):
            num[i] = float(v)
            ints[i] = int(v)
        elif c == V_STR:
            if strs is None:
                strs = [None] * n
            strs[i] = v
        else:
            if vecs is None:
                vecs = [None] * n
            vecs[i] = v
    return ObsValues(num, vtype, ints, strs, vecs)


def batch_values(value: Any, n: int) -> ObsValues:
    """Columns of ``n`` columnar observation values; TypeError/ValueError if bad.

    ``value`` is a scalar (any per-node value type, broadcast), a 1-D numpy array or list of
    ``n`` numbers (float, int or bool dtype), a list of ``n`` strs, or ``n`` vectors: a 2-D
    integer array (one row per observation) or a list of ``n`` int sequences.
    """
    if isinstance(value, str | float | int | np.generic) and not isinstance(value, np.ndarray):
        v, c = check_value(value)
        return per_node_values([v] * n, [c] * n)
    if isinstance(value, list | tuple) and value and isinstance(value[0], str):
        if len(value) != n:
            raise ValueError(f"emit: {len(value)} values for {n} observations")
        return per_node_values(*_checked([check_value(v) for v in value], V_STR))
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(f"emit: {len(value)} values for {n} observations")
        if value and isinstance(value[0], list | tuple | np.ndarray):
            return per_node_values(*_checked([check_value(v) for v in value], V_VEC))
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"emit: value must be {ALLOWED}, or an array of them; got "
                        f"{type(value).__name__}")
    if value.ndim == 2 and value.dtype.kind in "iu" and len(value) == n:
        return per_node_values([r for r in value.astype(np.int64)], [V_VEC] * n)
    if value.ndim > 1:
        raise TypeError(f"emit: value array of shape {value.shape} for {n} observations")
    arr = np.broadcast_to(value, (n,))
    kind = arr.dtype.kind
    if kind == "f":
        num = arr.astype(np.float64)
        if np.isnan(num).any():
            raise ValueError("emit: value NaN is not an observation (emit nothing, or a sentinel)")
        return ObsValues.floats(num)
    if kind in "iub":
        if kind == "u" and arr.dtype.itemsize == 8 and (arr > INT64_MAX).any():
            raise ValueError("emit: a value is outside the int64 range")
        ints = arr.astype(np.int64)
        code = V_BOOL if kind == "b" else V_INT
        return ObsValues(ints.astype(np.float64), np.full(n, code, np.int8), ints)
    raise TypeError(f"emit: value must be {ALLOWED}; got an array of dtype {arr.dtype}")


def _checked(pairs: list[tuple[Any, int]], want: int) -> tuple[list[Any], list[int]]:
    values = [v for v, _ in pairs]
    codes = [c for _, c in pairs]
    if any(c != want for c in codes):
        raise TypeError("emit: a list of values must all be strs, or all vectors")
    return values, codes
