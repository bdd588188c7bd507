# cython: language_level=3, boundscheck=False, wraparound=False
"""A row group's columns from the log's buffered batches, compiled.

The compiled twin of :func:`raysim.log.eventlog._joined` (with :func:`~raysim.log.eventlog._column`
applied to every chunk), which stays the reference and the fallback (an install without a
C compiler, or ``RAYSIM_PURE_PYTHON=1``): the same column, value for value
(``tests/test_eventlog.py`` compares them). NOTE: a row group of 500,000 rows is built
from ~7,000 batches (a window's sends, arrivals, timers and observations, ~70 rows each),
and the Python path paid ~1.5 µs a batch and column (a type check, then a slice
assignment or one more array for ``np.concatenate``): ~100 ms a row group, on the
simulation's thread. Here a batch is one ``memcpy`` or one fill.
"""

import numpy as np

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE
from cpython.buffer cimport PyBuffer_Release, PyObject_GetBuffer
from libc.string cimport memcpy, strcmp

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1
    double PyFloat_AS_DOUBLE(object)

cdef object _ndarray = np.ndarray

# the kinds of column the log buffers (eventlog._DTYPES)
cdef enum Kind:
    I64, I32, I8, F64


def join_chunks(tuple chunks, list lens, dtype, column):
    """One column of ``sum(lens)`` rows in ``dtype`` (int64, int32, int8 or float64) from
    buffered chunks: an array of its chunk's length, or a scalar standing for every row of
    it. A C-contiguous array in ``dtype`` is copied, a Python int (float, for a float64
    column) within the dtype's range filled; anything else goes through ``column(x, n)``
    (the Python path's ``_column``) and a slice assignment, as the Python path does."""
    cdef Py_ssize_t nch = len(chunks), i, n, j, total = 0, at = 0
    cdef Py_buffer ob, cb
    cdef char* base
    cdef Py_ssize_t isz
    cdef Kind kind
    cdef long long v
    cdef double d
    cdef int over
    cdef bint fast
    if len(lens) != nch:
        raise ValueError("chunks and lens differ in length")
    for i in range(nch):
        total += <Py_ssize_t>lens[i]
    out = np.empty(total, dtype=dtype)
    dt = out.dtype
    if dt == np.int64:
        kind = I64
    elif dt == np.int32:
        kind = I32
    elif dt == np.int8:
        kind = I8
    elif dt == np.float64:
        kind = F64
    else:
        raise TypeError(f"join_chunks: no compiled path for dtype {dt}")
    PyObject_GetBuffer(out, &ob, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
    try:
        base = <char*>ob.buf
        isz = ob.itemsize
        for i in range(nch):
            x = chunks[i]
            n = <Py_ssize_t>lens[i]
            fast = False
            if type(x) is _ndarray:
                # NOTE: a view with strides (a broadcast scalar) is no C buffer: the slow path
                try:
                    PyObject_GetBuffer(x, &cb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
                except (BufferError, ValueError):  # numpy: "ndarray is not C-contiguous"
                    pass
                else:
                    if (cb.ndim == 1 and cb.len == n * isz and cb.itemsize == isz
                            and strcmp(cb.format, ob.format) == 0):
                        if n:
                            memcpy(base + at * isz, cb.buf, n * isz)
                        fast = True
                    PyBuffer_Release(&cb)
            elif type(x) is int and kind != F64:
                v = PyLong_AsLongLongAndOverflow(x, &over)
                if not over and ((kind == I64) or (kind == I32 and -2147483648 <= v <= 2147483647)
                                 or (kind == I8 and -128 <= v <= 127)):
                    if kind == I64:
                        for j in range(n):
                            (<long long*>base)[at + j] = v
                    elif kind == I32:
                        for j in range(n):
                            (<int*>base)[at + j] = <int>v
                    else:
                        for j in range(n):
                            (<signed char*>base)[at + j] = <signed char>v
                    fast = True
            elif type(x) is float and kind == F64:
                d = PyFloat_AS_DOUBLE(x)
                for j in range(n):
                    (<double*>base)[at + j] = d
                fast = True
            if not fast:
                out[at : at + n] = column(x, n)
            at += n
    finally:
        PyBuffer_Release(&ob)
    return out
