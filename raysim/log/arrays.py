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


def strings(values: Sequence[str | None], large: bool = False) -> pa.Array:
    """``pa.array(values, pa.string())`` for a list of strings (None is null);
    ``pa.large_string()`` (64-bit offsets) if ``large``."""
    mask = np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))
    encoded = [b"" if v is None else v.encode("utf-8") for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(
        pa.large_string() if large else pa.string(), len(values),
        [_validity(mask), pa.py_buffer(offsets), data],
    )


def decoded(codes: np.ndarray, texts: Sequence[str], mask: np.ndarray) -> pa.Array:
    """``pa.DictionaryArray.from_arrays(codes, texts).dictionary_decode()`` with nulls where
    ``mask``: the texts ``codes`` index, as a string array built from buffers (a decode
    would import pyarrow.compute, ~0.1 s)."""
    n = len(codes)
    enc = [t.encode("utf-8") for t in texts]
    lens = np.array([len(b) for b in enc], dtype=np.int64)
    idx = np.where(mask, 0, codes)
    row_len = np.where(mask, 0, lens[idx]) if n else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(row_len, out=offsets[1:])
    width = max(int(lens.max()) if len(lens) else 0, 1)
    table = np.zeros((max(len(enc), 1), width), dtype=np.uint8)
    for i, b in enumerate(enc):
        table[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    data = table[idx][np.arange(width) < row_len[:, None]]  # each row's bytes, in order
    return pa.Array.from_buffers(
        pa.string(), n, [_validity(mask), pa.py_buffer(offsets), pa.py_buffer(data.tobytes())]
    )


def _bits(buf: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """Bits ``offset`` … ``offset + n`` of an Arrow bitmap, as a bool array."""
    return np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")[offset:offset + n] \
        .astype(np.bool_)


def codes(indices: pa.Array, null: int) -> np.ndarray:
    """An integer array's values as int64, ``null`` where one is null (a dictionary
    column's indices, say), from its buffers: no float64 detour through NaN."""
    n, off = len(indices), indices.offset
    if not n:
        return np.zeros(0, np.int64)
    validity, data = indices.buffers()[:2]
    out = np.frombuffer(data, indices.type.to_pandas_dtype(), count=off + n)[off:]
    out = out.astype(np.int64)
    if indices.null_count:
        out[~_bits(validity, off, n)] = null
    return out


def to_numpy(arr: pa.Array, keep: np.ndarray | None = None) -> np.ndarray:
    """``arr.to_numpy(zero_copy_only=False)`` for a number or boolean array, from its buffers;
    with ``keep`` (a bool mask), that of ``arr.filter(keep)``.

    The same values and dtype as pyarrow gives (an integer array with nulls is float64 with
    NaN, a boolean one with nulls is an object array with None), without pyarrow's pandas
    shim, which ``to_numpy`` asks even when no copy is needed, nor pyarrow.compute for the
    filter. Other types go to pyarrow.
    """
    typ, n, off = arr.type, len(arr), arr.offset
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
        if keep is not None:
            arr = arr.filter(numeric(keep))
        return arr.to_numpy(zero_copy_only=False)
    validity, data = arr.buffers()[:2]
    if pa.types.is_boolean(typ):
        values = _bits(data, off, n) if n else np.zeros(0, np.bool_)
    else:
        values = np.frombuffer(data, typ.to_pandas_dtype(), count=off + n)[off:] if n \
            else np.zeros(0, typ.to_pandas_dtype())
    if keep is not None:
        values = values[keep]
    if not arr.null_count:
        return values
    null = ~_bits(validity, off, n)
    if keep is not None:
        null = null[keep]
        if not null.any():  # the nulls were all in rows left out
            return values
    if pa.types.is_boolean(typ):
        out = values.astype(object)
        out[null] = None
        return out
    out = values.astype(np.float64) if values.dtype.kind in "iu" else values.copy()
    out[null] = np.nan
    return out
