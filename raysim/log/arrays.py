"""Arrow arrays built from numpy buffers and Python strings without ``pyarrow.array``.

NOTE: ``pyarrow.array`` asks pyarrow's pandas shim whether its input is a pandas object,
and the shim's first question imports pandas (~0.4 s of CPU here), even for a numpy array
or a list of strings. The event log needs no pandas, so it builds its arrays here, from
buffers (``pyarrow.Array.from_buffers``): the same arrays, equal value for value and type
for type, and the numeric ones without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def _validity(mask: np.ndarray | None) -> pa.Buffer | None:
    """The validity bitmap of ``mask`` (True = null), or None when nothing is null."""
    if mask is None or not mask.any():
        return None
    return pa.py_buffer(np.packbits(~mask, bitorder="little"))


def numeric(
    values: np.ndarray, type: pa.DataType | None = None, mask: np.ndarray | None = None
) -> pa.Array:
    """``pa.array(values, type, mask=mask)`` for a 1-d numpy array of numbers or booleans.

    ``type`` defaults to the array's own (``pa.from_numpy_dtype``); a different one is
    reached by a numpy cast first (``astype``), as ``pa.array`` would cast.
    """
    arrow_type = pa.from_numpy_dtype(values.dtype) if type is None else type
    if type is not None and pa.from_numpy_dtype(values.dtype) != type:
        values = values.astype(type.to_pandas_dtype())
    n = len(values)
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
    else:
        data = pa.py_buffer(np.ascontiguousarray(values))
    return pa.Array.from_buffers(arrow_type, n, [_validity(mask), data])


def strings(values: Sequence[str | None]) -> pa.Array:
    """``pa.array(values, pa.string())`` for a list of strings (None is null)."""
    mask = np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))
    encoded = [b"" if v is None else v.encode("utf-8") for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(
        pa.string(), len(values), [_validity(mask), pa.py_buffer(offsets), data]
    )
