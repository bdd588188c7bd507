# cython: language_level=3, boundscheck=False, wraparound=False
"""Counter-based uniforms, compiled: :func:`raysim.values.rng.uniform_array`'s words in one
C pass over the ids instead of a dozen numpy passes.

The compiled twin of the pure-numpy reference in :mod:`raysim.values.rng`, which stays the
fallback (an install without a C compiler, or ``RAYSIM_PURE_PYTHON=1``); the same floats
bit for bit (``tests/test_rng.py`` compares them). NOTE: it pays on the short batches of a
window a few ticks long, where numpy's per-call cost is most of the work (the router draws
a delay for every send of every window).
"""

import numpy as np

from libc.stdint cimport uint64_t

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t C1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t C2 = 0x94D049BB133111EBULL
cdef double INV_2_53 = 1.0 / 9007199254740992.0


cdef inline uint64_t _mix(uint64_t x) nogil:
    x = (x ^ (x >> 30)) * C1
    x = (x ^ (x >> 27)) * C2
    return x ^ (x >> 31)


def uniform(uint64_t key, tuple ids):
    """Uniform floats in [0, 1): ``h = key``, then ``h = mix(mix(id + GOLDEN) ^ h)`` for
    each id column in turn, and ``(h >> 11) * 2^-53`` (1-D uint64 columns of one length)."""
    cdef Py_ssize_t n = len(ids[0]), i, j, m = len(ids)
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    cdef const uint64_t[::1] a
    cdef uint64_t[::1] h
    if m == 1:
        a = ids[0]
        with nogil:
            for i in range(n):
                o[i] = <double>(_mix(_mix(a[i] + GOLDEN) ^ key) >> 11) * INV_2_53
        return out
    hs = np.empty(n, dtype=np.uint64)
    h = hs
    a = ids[0]
    with nogil:
        for i in range(n):
            h[i] = _mix(_mix(a[i] + GOLDEN) ^ key)
    for j in range(1, m):
        a = ids[j]
        with nogil:
            for i in range(n):
                h[i] = _mix(_mix(a[i] + GOLDEN) ^ h[i])
    with nogil:
        for i in range(n):
            o[i] = <double>(h[i] >> 11) * INV_2_53
    return out
