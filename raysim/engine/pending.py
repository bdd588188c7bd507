"""Pending events as time-sorted column chunks: O(due) work per window, not O(pending).

Each chunk is a batch of events (numpy columns, the first being time, plus a list of
Python objects such as payloads or timer tags) sorted by time once when it arrives. Taking
the events due before ``end`` is a binary search and a slice per chunk; a chunk is dropped
once it is used up. NOTE: a window typically sees a few dozen live chunks (one per window
of sends or timers still in flight), so the per-window cost is tiny next to a full scan of
every pending event, which at 10^5 nodes cost more than the events themselves.

Where the compiled hot path is built (:mod:`raysim.engine.compiled`), building a chunk,
the heap of chunks, the take loop and the join of the chunks' blocks run compiled
(``_hotpath.make_chunk``, ``ChunkHeap``, ``Chunk``, ``take_chunks``, ``join_blocks``: C
keys, C views of each chunk's times and block); the Python ones here are the reference
and give the same rows in the same order (``tests/test_pending.py``). NOTE: a window of
``chord_hops`` takes ~90 timers from ~480 live timer chunks, and building a chunk cost
~40 us of numpy calls in the run; compiled, the pools' share of the run fell by about
half (README, performance).
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from raysim.engine.compiled import hotpath


def _packable(c: np.ndarray) -> bool:
    """Whether int64 holds every value of column ``c`` exactly (and casts back)."""
    k = c.dtype.kind
    return c.ndim == 1 and (k in "ib" or (k == "u" and c.dtype.itemsize < 8))


def _stable_order(t: np.ndarray) -> np.ndarray:
    """``np.argsort(t, kind="stable")``.

    NOTE: a batch's times nearly always span less than 2^16 ticks (a window's sends, a
    few delays long); shifted into uint16 they sort by numpy's radix sort, the same stable
    order ~3x faster than the int64 sort.
    """
    t0 = int(t.min())
    if int(t.max()) - t0 < 1 << 16:
        return np.argsort((t - t0).astype(np.uint16), kind="stable")
    return np.argsort(t, kind="stable")


def pack(
    cols: tuple[np.ndarray, ...],
) -> tuple[tuple[int, ...], tuple[np.dtype, ...], np.ndarray, dict[int, np.ndarray]]:
    """A batch's columns as a chunk holds them: which are packed (their positions), every
    column's dtype, the int64 block of the packed ones (one row each) and the others."""
    rows = tuple(i for i, c in enumerate(cols) if _packable(c))
    block = np.empty((len(rows), len(cols[0])), dtype=np.int64)
    for r, i in enumerate(rows):
        block[r] = cols[i]
    other = {i: c for i, c in enumerate(cols) if i not in rows}
    return rows, tuple(c.dtype for c in cols), block, other


class _Chunk:
    """One batch: its integer and boolean columns packed as the rows of one int64 block
    (so slicing a chunk is one numpy operation, not one per column), the other columns
    (floats, 2-D clock columns) as they are, and the object column."""

    __slots__ = ("block", "dtypes", "last", "objs", "other", "pos", "rows", "times")

    def __init__(
        self,
        rows: tuple[int, ...],
        dtypes: tuple[np.dtype, ...],
        block: np.ndarray,
        other: dict[int, np.ndarray],
        times: np.ndarray,
        objs: list[Any],
    ) -> None:
        """A chunk of the columns ``pack`` gave (``rows``, ``dtypes``, ``block``, ``other``),
        their sorted times and the object column."""
        self.rows, self.dtypes, self.block, self.other = rows, dtypes, block, other
        self.times = times
        self.last = int(times[-1])
        self.objs = objs
        self.pos = 0



def _columns(c: Any, pos: int, k: int) -> list[np.ndarray]:
    """Columns ``pos:k`` of chunk ``c`` alone, in their own dtypes."""
    out: list[np.ndarray] = [None] * len(c.dtypes)  # type: ignore[list-item]
    block = c.block[:, pos:k]
    for r, i in enumerate(c.rows):
        out[i] = block[r].astype(c.dtypes[i], copy=False)
    for i, col in c.other.items():
        out[i] = col[pos:k]
    return out


def _concat(parts: list[tuple[Any, int, int]], ncols: int, hot: Any) -> list[np.ndarray]:
    """The columns of several chunk slices, concatenated (as ``np.concatenate`` per column
    would give them: the same values and dtypes); ``hot``: the compiled module, which
    joins the int64 blocks, or None."""
    first = parts[0][0]
    block = None
    if hot is not None:  # (None where the chunks' layouts differ)
        joined: list[np.ndarray] | None = hot.join_columns(parts, ncols)
        if joined is not None:
            return joined
        block = hot.join_blocks(parts, first.rows, first.dtypes)
    elif all(c.rows == first.rows and c.dtypes == first.dtypes for c, _, _ in parts):
        block = np.concatenate([c.block[:, a:b] for c, a, b in parts], axis=1)
    if block is None:
        cols = [_columns(c, a, b) for c, a, b in parts]
        return [np.concatenate(cs) for cs in zip(*cols, strict=True)]
    out: list[np.ndarray] = [None] * ncols  # type: ignore[list-item]
    for r, i in enumerate(first.rows):
        out[i] = block[r].astype(first.dtypes[i], copy=False)
    for i in first.other:
        out[i] = np.concatenate([c.other[i][a:b] for c, a, b in parts])
    return out


class _ListHeap:
    """:class:`_hotpath.ChunkHeap`'s pure-Python twin: ``heapq`` over ``(earliest pending
    time, arrival number, chunk)`` tuples, with the same methods."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, Any]] = []

    def __len__(self) -> int:
        return len(self.items)

    def push(self, t: int, s: int, c: Any) -> None:
        """Add chunk ``c`` under the key (t, s)."""
        heapq.heappush(self.items, (t, s, c))

    def min_time(self) -> int | None:
        """The smallest key's time, or None when empty."""
        return self.items[0][0] if self.items else None

    def chunks(self) -> list[Any]:
        """The chunks in the heap (in no particular order)."""
        return [c for _, _, c in self.items]


class Pending:
    """A pool of time-stamped events with ``ncols`` numpy columns and one object column.

    Chunks sit in a heap keyed by their earliest pending time, so a window touches only the
    chunks that have something due (with a 1-tick window and a 1000-tick timer period,
    about a thousand chunks are alive at once and nearly all of them are left alone).
    """

    def __init__(self, ncols: int) -> None:
        self.ncols = ncols
        self._seq = 0
        # The compiled chunks, heap and take loop where they are built (the same events in
        # the same order: see raysim.engine.compiled), the pure-Python ones otherwise.
        self._hot = hotpath()
        self._chunk: Any = _Chunk if self._hot is None else self._hot.Chunk
        self._heap: Any = _ListHeap() if self._hot is None else self._hot.ChunkHeap()

    def add(self, cols: tuple[np.ndarray, ...], objs: list[Any]) -> None:
        """Add a batch (any order); it is sorted by time (stable) here."""
        if len(cols[0]) == 0:
            return
        self._seq += 1
        if self._hot is not None:
            made = self._hot.make_chunk(cols, objs)  # None where some column is not packed
            if made is not None:
                self._heap.push(int(made.times[0]), self._seq, made)
                return
        t = cols[0]
        rows, dtypes, block, other = pack(cols)
        if len(t) > 1 and np.count_nonzero(t[1:] < t[:-1]):
            # NOTE: the packed block is put in order with one gather, not one per column
            order = _stable_order(t)
            block = block.take(order, axis=1)
            other = {i: c[order] for i, c in other.items()}
            t = t[order]
            if objs:
                objs = list(map(objs.__getitem__, order.tolist()))
        self._heap.push(int(t[0]), self._seq, self._chunk(rows, dtypes, block, other, t, objs))

    def min_time(self) -> int | None:
        """The earliest pending time, or None if the pool is empty."""
        m: int | None = self._heap.min_time()
        return m

    def __len__(self) -> int:
        return sum(len(c.times) - c.pos for c in self._heap.chunks())

    def take(self, end: int) -> tuple[list[np.ndarray], list[Any]]:
        """Remove and return every event with time < ``end`` (columns concatenated)."""
        parts: list[tuple[Any, int, int]]
        objs: list[Any]
        if self._hot is not None:
            parts, objs = self._hot.take_chunks(self._heap, end)
        else:
            parts, objs = self._take_parts(end)
        if not parts:
            return [np.zeros(0, dtype=np.int64) for _ in range(self.ncols)], []
        if len(parts) == 1:
            c, a, b = parts[0]
            return _columns(c, a, b), objs
        return _concat(parts, self.ncols, self._hot), objs

    def _take_parts(self, end: int) -> tuple[list[tuple[Any, int, int]], list[Any]]:
        """The chunk slices due before ``end`` (chunk, from, to), in the order they are
        taken, and their objects; each chunk's position is moved past them."""
        parts: list[tuple[Any, int, int]] = []
        objs: list[Any] = []
        heap = self._heap.items
        while heap and heap[0][0] < end:
            _, seq, c = heapq.heappop(heap)
            pos, times = c.pos, c.times
            n = len(times)
            # NOTE: a chunk used up whole needs no search; otherwise the search runs on the
            # whole (sorted) column, whose first ``pos`` times are all below ``end``.
            k = n if c.last < end else int(times.searchsorted(end))
            parts.append((c, pos, k))
            if c.objs:
                objs.extend(c.objs if pos == 0 and k == n else c.objs[pos:k])
            c.pos = k
            if k < n:
                heapq.heappush(heap, (int(times[k]), seq, c))
        return parts, objs
