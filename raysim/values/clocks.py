"""Logical clocks: Lamport clocks, vector clocks, and happens-before classification.

Theory of operation
-------------------
Lamport (L. Lamport, "Time, clocks, and the ordering of events in a distributed system",
CACM 21(7), 1978) defines *happens-before* (→) as the smallest transitive relation with
a → b when a precedes b on one process, or a is the send and b the receive of one message.
Events related in neither direction are *concurrent* (a ∥ b).

A **Lamport clock** is one counter per process: tick on every local event and on every send
(the send carries the new value), and on receive set ``max(local, received) + 1``. This gives
the *clock condition* a → b ⇒ L(a) < L(b), but not its converse; ordering events by the key
``(timestamp, process_id)`` extends → to a total order.

A **vector clock** (C. Fidge, "Timestamps in message-passing systems that preserve the
partial ordering", ACSC 1988; F. Mattern, "Virtual time and global states of distributed
systems", 1989) keeps one counter per process. Process i ticks ``VC[i]`` on local events and
sends; on receive it takes the element-wise maximum with the piggybacked vector, then ticks
``VC[i]``. Vector clocks characterise causality exactly: a → b ⇔ VC(a) < VC(b) (≤ in every
entry, < in at least one), and a ∥ b ⇔ neither vector dominates the other.

Two interchangeable representations are provided, because a run can have 10⁵ processes:
:class:`DenseVectorClock` (a numpy ``int64`` array of fixed size n; merge and compare are
vectorised) and :class:`SparseVectorClock` (a dict holding only the non-zero entries; cost
proportional to the entries actually present). They tick, merge and compare identically
(property-tested through :meth:`VectorClock.to_dense` / :meth:`VectorClock.to_sparse`).
Mixing the two in one operation raises ``TypeError``: convert explicitly.

All clocks here are immutable values: every update returns a new clock, so a vector attached
to a message can never be changed later by its sender.

:func:`raysim.values.history.classify_history` replays a small history with these clocks and
classifies every pair of its events.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from raysim.values._checks import non_negative_int

__all__ = [
    "DenseVectorClock",
    "LamportClock",
    "Order",
    "SparseVectorClock",
    "VectorClock",
    "compare",
]


class Order(enum.Enum):
    """The causal relation between two timestamps ``a`` and ``b``."""

    BEFORE = "before"  # a → b
    AFTER = "after"  # b → a
    EQUAL = "equal"
    CONCURRENT = "concurrent"  # a ∥ b

    def reversed(self) -> Order:
        """The relation seen from the other side: BEFORE ↔ AFTER, others unchanged."""
        if self is Order.BEFORE:
            return Order.AFTER
        if self is Order.AFTER:
            return Order.BEFORE
        return self


def _order_from(a_gt: bool, b_gt: bool) -> Order:
    """Order of a vs b, given whether some entry of a exceeds b's and vice versa."""
    if a_gt and b_gt:
        return Order.CONCURRENT
    if a_gt:
        return Order.AFTER
    if b_gt:
        return Order.BEFORE
    return Order.EQUAL


# --------------------------------------------------------------------------- Lamport clocks


@dataclass(frozen=True, slots=True, order=True, kw_only=True)
class LamportClock:
    """A Lamport clock of process ``pid``; immutable, every update returns a new clock.

    Instances compare by the total-order key ``(time, pid)``.

    >>> p = LamportClock(pid=0)
    >>> p, ts = p.send()
    >>> q = LamportClock(pid=1, time=5).receive(ts)
    >>> (ts, q.time, p < q)
    (1, 6, True)
    """

    time: int = 0
    pid: int

    def __post_init__(self) -> None:
        non_negative_int(self.time, "LamportClock.time")
        non_negative_int(self.pid, "LamportClock.pid")

    @property
    def key(self) -> tuple[int, int]:
        """The total-order key ``(timestamp, process_id)``."""
        return (self.time, self.pid)

    def tick(self) -> LamportClock:
        """The clock after a local event."""
        return LamportClock(time=self.time + 1, pid=self.pid)

    def send(self) -> tuple[LamportClock, int]:
        """Tick for a send; returns the new clock and the timestamp to piggyback."""
        clock = self.tick()
        return clock, clock.time

    def receive(self, timestamp: int) -> LamportClock:
        """The clock after receiving a message stamped ``timestamp``: ``max(local, ts) + 1``."""
        ts = non_negative_int(timestamp, "received timestamp")
        return LamportClock(time=max(self.time, ts) + 1, pid=self.pid)


# --------------------------------------------------------------------------- vector clocks


class VectorClock(ABC):
    """An immutable vector clock; see :class:`DenseVectorClock` and :class:`SparseVectorClock`.

    Process ids are non-negative integers. Every operation returns a new clock.
    """

    __slots__ = ()

    @abstractmethod
    def __getitem__(self, pid: int) -> int:
        """The entry of process ``pid`` (0 if never ticked)."""

    @abstractmethod
    def tick(self, pid: int) -> Self:
        """The clock after a local event of process ``pid``."""

    @abstractmethod
    def merge(self, other: Self) -> Self:
        """Element-wise maximum of two clocks (no tick)."""

    @abstractmethod
    def compare(self, other: Self) -> Order:
        """How ``self`` relates to ``other`` (BEFORE means self → other)."""

    @abstractmethod
    def as_dict(self) -> dict[int, int]:
        """The non-zero entries as ``{pid: count}``, in ascending pid order."""

    @abstractmethod
    def to_dense(self, n: int | None = None) -> DenseVectorClock:
        """This clock as a dense clock of size ``n``."""

    @abstractmethod
    def to_sparse(self) -> SparseVectorClock:
        """This clock as a sparse clock."""

    def send(self, pid: int) -> tuple[Self, Self]:
        """Tick for a send by ``pid``; returns the new clock and the stamp to piggyback."""
        clock = self.tick(pid)
        return clock, clock

    def receive(self, pid: int, stamp: Self) -> Self:
        """The clock of ``pid`` after receiving a message stamped ``stamp``: merge, then tick."""
        return self.merge(stamp).tick(pid)

    def happened_before(self, other: Self) -> bool:
        """True if ``self`` → ``other``."""
        return self.compare(other) is Order.BEFORE

    def concurrent_with(self, other: Self) -> bool:
        """True if neither clock dominates the other."""
        return self.compare(other) is Order.CONCURRENT

    def _check_kind(self, other: object) -> None:
        if type(other) is not type(self):
            raise TypeError(
                f"cannot combine {type(self).__name__} with {type(other).__name__}: "
                "convert one with to_dense(n) or to_sparse() first"
            )


def compare(a: VectorClock, b: VectorClock) -> Order:
    """How vector clock ``a`` relates to ``b``: BEFORE (a → b), AFTER, EQUAL or CONCURRENT."""
    return a.compare(b)


class DenseVectorClock(VectorClock):
    """A vector clock over processes ``0..n-1`` stored as a read-only numpy ``int64`` array.

    >>> a = DenseVectorClock.zeros(3).tick(0)
    >>> b = DenseVectorClock.zeros(3).receive(1, a)
    >>> a.compare(b), b
    (<Order.BEFORE: 'before'>, DenseVectorClock([1, 1, 0]))
    """

    __slots__ = ("_v",)
    _v: npt.NDArray[np.int64]

    def __init__(self, counts: npt.ArrayLike) -> None:
        arr = np.asarray(counts)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"a dense vector clock needs a non-empty 1-D array, got shape {arr.shape}"
            )
        if arr.dtype.kind not in "iu":
            raise TypeError(f"vector clock entries must be integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "i" and (arr < 0).any():
            raise ValueError("vector clock entries must be >= 0")
        if arr.dtype.kind == "u" and (arr > np.iinfo(np.int64).max).any():
            raise ValueError("vector clock entries must fit in int64")
        v = arr.astype(np.int64, copy=True)
        v.flags.writeable = False
        self._v = v

    @classmethod
    def zeros(cls, n: int) -> DenseVectorClock:
        """The initial clock of an ``n``-process system."""
        return cls(np.zeros(non_negative_int(n, "n"), dtype=np.int64))

    @classmethod
    def _wrap(cls, v: npt.NDArray[np.int64]) -> DenseVectorClock:
        # NOTE: trusted fast path, skips validation and the defensive copy; v must be fresh.
        obj = object.__new__(cls)
        v.flags.writeable = False
        obj._v = v
        return obj

    @property
    def n(self) -> int:
        """The number of processes."""
        return int(self._v.shape[0])

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        """The entries, as a read-only array."""
        return self._v

    def _pid(self, pid: int) -> int:
        p = non_negative_int(pid, "pid")
        if p >= self._v.shape[0]:
            raise ValueError(f"pid {p} out of range for a dense vector clock of size {self.n}")
        return p

    def _check_size(self, other: DenseVectorClock) -> None:
        self._check_kind(other)
        if other.n != self.n:
            raise ValueError(
                f"cannot combine dense vector clocks of different sizes: {self.n} and {other.n}"
            )

    def __getitem__(self, pid: int) -> int:
        return int(self._v[self._pid(pid)])

    def tick(self, pid: int) -> DenseVectorClock:
        v = self._v.copy()
        v[self._pid(pid)] += 1
        return DenseVectorClock._wrap(v)

    def merge(self, other: DenseVectorClock) -> DenseVectorClock:
        self._check_size(other)
        return DenseVectorClock._wrap(np.maximum(self._v, other._v))

    def compare(self, other: DenseVectorClock) -> Order:
        self._check_size(other)
        a, b = self._v, other._v
        return _order_from(bool((a > b).any()), bool((b > a).any()))

    def as_dict(self) -> dict[int, int]:
        nz = np.flatnonzero(self._v)
        return dict(zip(nz.tolist(), self._v[nz].tolist(), strict=True))

    def to_dense(self, n: int | None = None) -> DenseVectorClock:
        if n is not None and n != self.n:
            raise ValueError(f"cannot resize a dense vector clock of size {self.n} to {n}")
        return self

    def to_sparse(self) -> SparseVectorClock:
        return SparseVectorClock._wrap(self.as_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DenseVectorClock):
            return NotImplemented
        return bool(np.array_equal(self._v, other._v))

    def __hash__(self) -> int:
        return hash(self._v.tobytes())

    def __repr__(self) -> str:
        return f"DenseVectorClock({self._v.tolist()})"


class SparseVectorClock(VectorClock):
    """A vector clock storing only its non-zero entries, as ``{pid: count}``.

    >>> a = SparseVectorClock().tick(7)
    >>> b = SparseVectorClock({3: 2}).receive(3, a)
    >>> b, a.compare(b)
    (SparseVectorClock({3: 3, 7: 1}), <Order.BEFORE: 'before'>)
    """

    __slots__ = ("_d", "_hash")
    _d: dict[int, int]
    _hash: int | None

    def __init__(self, entries: Mapping[int, int] | Iterable[tuple[int, int]] = ()) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        d: dict[int, int] = {}
        for pid, count in items:
            p, c = non_negative_int(pid, "pid"), non_negative_int(count, f"entry of pid {pid}")
            if p in d:
                raise ValueError(f"pid {p} given twice")
            if c:
                d[p] = c
        self._d = d
        self._hash = None

    @classmethod
    def _wrap(cls, d: dict[int, int]) -> SparseVectorClock:
        # NOTE: trusted fast path; d must be fresh and hold only non-zero entries.
        obj = object.__new__(cls)
        obj._d = d
        obj._hash = None
        return obj

    @property
    def nonzero(self) -> int:
        """The number of non-zero entries."""
        return len(self._d)

    def __getitem__(self, pid: int) -> int:
        return self._d.get(non_negative_int(pid, "pid"), 0)

    def tick(self, pid: int) -> SparseVectorClock:
        p = non_negative_int(pid, "pid")
        d = dict(self._d)
        d[p] = d.get(p, 0) + 1
        return SparseVectorClock._wrap(d)

    def merge(self, other: SparseVectorClock) -> SparseVectorClock:
        self._check_kind(other)
        big, small = (self._d, other._d) if len(self._d) >= len(other._d) else (other._d, self._d)
        d = dict(big)
        get = d.get
        for p, c in small.items():
            if c > get(p, 0):
                d[p] = c
        return SparseVectorClock._wrap(d)

    def compare(self, other: SparseVectorClock) -> Order:
        self._check_kind(other)
        a, b = self._d, other._d
        a_gt = any(c > b.get(p, 0) for p, c in a.items())
        b_gt = any(c > a.get(p, 0) for p, c in b.items())
        return _order_from(a_gt, b_gt)

    def as_dict(self) -> dict[int, int]:
        return {p: self._d[p] for p in sorted(self._d)}

    def to_dense(self, n: int | None = None) -> DenseVectorClock:
        """Dense copy of size ``n`` (default: one past the largest pid, at least 1)."""
        top = max(self._d, default=-1)
        size = max(top + 1, 1) if n is None else non_negative_int(n, "n")
        if top >= size:
            raise ValueError(f"pid {top} does not fit in a dense vector clock of size {size}")
        v = np.zeros(size, dtype=np.int64)
        if self._d:
            v[np.fromiter(self._d.keys(), np.int64, len(self._d))] = np.fromiter(
                self._d.values(), np.int64, len(self._d)
            )
        return DenseVectorClock(v)

    def to_sparse(self) -> SparseVectorClock:
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVectorClock):
            return NotImplemented
        return self._d == other._d

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"SparseVectorClock({self.as_dict()})"
