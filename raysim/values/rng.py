"""Counter-based randomness: every random decision is a pure function of its identity.

Theory of operation
-------------------
Determinism across backends, shard counts and machines requires that no random draw depend
on *where* or *in which order* it is made. raysim therefore never shares a random stream
between nodes or between messages. Every draw is ``mix(key, counter)`` where ``key`` names
the stream (run seed + purpose + node or message identity) and ``counter`` is the draw's
position in that stream. The mixing function is SplitMix64's finaliser (Steele, Lea and
Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), a bijection on 64-bit
words with good avalanche; it is used both in pure Python (per-node streams, one draw at a
time) and vectorised over numpy ``uint64`` arrays (the router's per-message decisions, and
columnar protocols' draws for many nodes at once).

NOTE: a counter-based stream costs a few words of state per node. A ``random.Random`` per
node would cost 2.5 KB each (250 MB at 10^5 nodes) and ~10 µs to seed, which is why the
standard generators are not used here.
"""

from __future__ import annotations

import os
from collections.abc import MutableSequence, Sequence
from types import ModuleType
from typing import Protocol, TypeVar

import numpy as np

_compiled: ModuleType | None
try:  # built by ``pip install`` where a C compiler is (setup.py); the same floats
    from raysim.values import _mix as _compiled
except ImportError:
    _compiled = None

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_INV_2_53 = 1.0 / (1 << 53)

T = TypeVar("T")


def mix64(x: int) -> int:
    """SplitMix64 finaliser of a Python int, reduced to 64 bits."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _C1) & MASK64
    x = ((x ^ (x >> 27)) * _C2) & MASK64
    return x ^ (x >> 31)


def derive(*parts: int) -> int:
    """A 64-bit key derived from a sequence of integers (seed, purpose, ids, ...)."""
    h = 0x6A09E667F3BCC909
    for p in parts:
        h = mix64(h ^ mix64((p & MASK64) + GOLDEN))
    return h


def mix64_array(x: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser over a ``uint64`` array (wrapping arithmetic)."""
    return mix64_inplace(x.astype(np.uint64, copy=True))


def mix64_inplace(x: np.ndarray) -> np.ndarray:
    """:func:`mix64_array` overwriting ``x`` (a ``uint64`` array), which it returns."""
    t = np.empty_like(x)  # NOTE: one scratch array for the three shifts, not three
    np.right_shift(x, np.uint64(30), out=t)
    x ^= t
    x *= np.uint64(_C1)
    np.right_shift(x, np.uint64(27), out=t)
    x ^= t
    x *= np.uint64(_C2)
    np.right_shift(x, np.uint64(31), out=t)
    x ^= t
    return x


def uniform_array(key: int, *ids: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per element, a pure function of ``key`` and the ids.

    The ids are combined element-wise, so the same (key, ids) always yields the same value
    whatever the array's length, order or the process computing it.
    """
    if (
        _compiled is not None
        and ids
        and all(a.ndim == 1 and a.dtype.kind in "iub" and len(a) == len(ids[0]) for a in ids)
        and os.environ.get("RAYSIM_PURE_PYTHON", "") != "1"
    ):
        words = tuple(np.ascontiguousarray(a.astype(np.uint64, copy=False)) for a in ids)
        out: np.ndarray = _compiled.uniform(key & MASK64, words)
        return out
    # NOTE: h = mix(h ^ mix(id + GOLDEN)) for each id in turn, from h = key, computed in
    # place; an id column holding one value throughout (the router's copy numbers, nearly
    # always 0) is mixed once as a Python int. The same words as the plain formula.
    h: np.ndarray | None = None
    with np.errstate(over="ignore"):
        for a in ids:
            if h is not None and len(a) and bool((a == a[0]).all()):
                h ^= np.uint64(mix64(int(a[0]) + GOLDEN))
            else:
                x = a.astype(np.uint64)
                x += np.uint64(GOLDEN)
                mix64_inplace(x)
                x ^= np.uint64(key & MASK64) if h is None else h
                h = x
            mix64_inplace(h)
    assert h is not None, "uniform_array needs at least one id column"
    return words_to_unit(h)


class NodeRng:
    """A node's private random stream, in the spirit of :class:`random.Random`.

    Word ``i`` (i = 1, 2, ...) of the stream is ``mix64(key + i * GOLDEN)``: the SplitMix64
    sequence started at the node's key. Two nodes never share a stream and a node's draws do
    not depend on any other node's activity, so results are the same however nodes are
    placed on shards. :func:`stream_words` computes the same words for many nodes at once,
    which is what lets a columnar protocol reproduce a per-node one draw for draw.
    """

    __slots__ = ("_ctr", "_key")

    def __init__(self, key: int) -> None:
        self._key = key & MASK64
        self._ctr = 0

    def next_u64(self) -> int:
        """The next raw 64-bit word of the stream."""
        self._ctr += 1
        x = (self._key + self._ctr * GOLDEN) & MASK64
        x = ((x ^ (x >> 30)) * _C1) & MASK64
        x = ((x ^ (x >> 27)) * _C2) & MASK64
        return x ^ (x >> 31)

    def random(self) -> float:
        """A float uniform in [0, 1)."""
        return (self.next_u64() >> 11) * _INV_2_53

    def randrange(self, n: int) -> int:
        """An int uniform in [0, n) (Lemire's multiply-shift; bias below 2^-40 for n < 2^24)."""
        if n <= 0:
            raise ValueError(f"randrange: n must be positive, got {n}")
        return (self.next_u64() * n) >> 64

    def randint(self, a: int, b: int) -> int:
        """An int uniform in [a, b], both ends included."""
        return a + self.randrange(b - a + 1)

    def uniform(self, a: float, b: float) -> float:
        """A float uniform in [a, b)."""
        return a + (b - a) * self.random()

    def choice(self, seq: Sequence[T]) -> T:
        """One element of a non-empty sequence, uniformly."""
        return seq[self.randrange(len(seq))]

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        """k distinct elements of ``seq`` (partial Fisher-Yates over the indices)."""
        return draw_sample(self, seq, k)

    def shuffle(self, items: MutableSequence[T]) -> None:
        """Shuffle a list in place (Fisher-Yates)."""
        draw_shuffle(self, items)


class _Ranged(Protocol):
    def randrange(self, n: int) -> int: ...


def draw_sample(rng: _Ranged, seq: Sequence[T], k: int) -> list[T]:
    """k distinct elements of ``seq`` drawn with ``rng.randrange`` (partial Fisher-Yates).

    Shared by :class:`NodeRng` and its compiled twin, so both take the same draws.
    """
    n = len(seq)
    if not 0 <= k <= n:
        raise ValueError(f"sample: k must be in [0, {n}], got {k}")
    if k * 4 < n:  # sparse case: rejection on a small set, no O(n) copy
        picked: list[int] = []
        seen: set[int] = set()
        while len(picked) < k:
            i = rng.randrange(n)
            if i not in seen:
                seen.add(i)
                picked.append(i)
        return [seq[i] for i in picked]
    idx = list(range(n))
    for i in range(k):
        j = i + rng.randrange(n - i)
        idx[i], idx[j] = idx[j], idx[i]
    return [seq[i] for i in idx[:k]]


def draw_shuffle(rng: _Ranged, items: MutableSequence[T]) -> None:
    """Shuffle a list in place with ``rng.randrange`` (Fisher-Yates)."""
    for i in range(len(items) - 1, 0, -1):
        j = rng.randrange(i + 1)
        items[i], items[j] = items[j], items[i]


def stream_words(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Word ``counters[i]`` of the stream with key ``keys[i]``, for all i (uint64 arrays).

    Bit-identical to calling :meth:`NodeRng.next_u64` ``counters[i]`` times.
    """
    with np.errstate(over="ignore"):
        x = counters.astype(np.uint64)
        x *= np.uint64(GOLDEN)
        x += keys.astype(np.uint64, copy=False)
    return mix64_inplace(x)


def words_to_unit(w: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from 64-bit words, exactly as :meth:`NodeRng.random`."""
    return (w >> np.uint64(11)).astype(np.float64) * _INV_2_53


def words_to_range(w: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Ints in [0, n) from 64-bit words, exactly as :meth:`NodeRng.randrange` (n < 2**32).

    ``(w * n) >> 64`` without 128-bit integers: split w into 32-bit halves.
    """
    n64 = np.asarray(n, dtype=np.uint64)
    hi = w >> np.uint64(32)
    lo = w & np.uint64(0xFFFFFFFF)
    with np.errstate(over="ignore"):
        return ((hi * n64 + ((lo * n64) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)
