"""Version vectors for replicated data, and the operation broadcast/receive rule.

Theory of operation
-------------------
A version vector (D. S. Parker et al., "Detection of mutual inconsistency in distributed
systems", IEEE TSE 9(3), 1983) summarises the updates a replica has seen: entry ``vv[r]``
counts the updates originated by replica ``r``. A replica increments its own entry when it
updates, and takes the entry-wise maximum when it absorbs another replica's state.

``a`` *dominates* ``b`` when ``a[r] >= b[r]`` for every replica ``r``: ``a`` has seen every
update ``b`` has seen (equal vectors dominate each other). If neither dominates, the two
versions were updated *concurrently* — Parker et al.'s "mutual inconsistency" — and a conflict
resolution rule (LWW, a multi-value register, a CRDT merge) must reconcile them.

The course notes' Algorithm 3 propagates *operations*: the originator increments its entry,
attaches its vector to the operation and broadcasts it (:func:`broadcast`); a receiver sets
``vv[src] = max(vv[src], op.vv[src])`` and applies the operation (:func:`receive`).
NOTE: ``vv[src]`` then records the highest sequence number seen from ``src``, not how many of
its operations were applied; the two agree only if operations are delivered in causal (at
least FIFO) order. :func:`is_causally_ready` is the classic causal-delivery test
(Birman, Schiper and Stephenson, ACM TOCS 9(3), 1991) for a hold-back queue, and
:func:`is_delivered` detects duplicates under such delivery.

Replica ids are ``int`` or ``str``; where an order is needed they sort by
:func:`replica_key` (ints before strings). Version vectors are immutable values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from raysim.values._checks import non_negative_int
from raysim.values.clocks import Order

__all__ = [
    "Operation",
    "ReplicaId",
    "VersionVector",
    "broadcast",
    "is_causally_ready",
    "is_delivered",
    "receive",
    "replica_key",
]

ReplicaId: TypeAlias = int | str
# NOTE: Mapping is invariant in its key type, so dict[str, int] is not a
# Mapping[int | str, int]; each key type is listed so that both type-check.
Entries: TypeAlias = (
    Mapping[int, int]
    | Mapping[str, int]
    | Mapping[ReplicaId, int]
    | Iterable[tuple[ReplicaId, int]]
)
P = TypeVar("P")


def replica_key(replica: ReplicaId) -> tuple[int, int, str]:
    """A total order over replica ids: integers ascending, then strings ascending."""
    if isinstance(replica, int):
        return (0, replica, "")
    if isinstance(replica, str):
        return (1, 0, replica)
    raise TypeError(f"a replica id must be an int or a str, got {replica!r}")


def _entry(replica: ReplicaId, count: object) -> int:
    replica_key(replica)
    return non_negative_int(count, f"entry of replica {replica!r}")


class VersionVector:
    """An immutable version vector ``{replica: count}``; absent replicas count 0.

    >>> base = VersionVector().increment("A")
    >>> a, b = base.increment("A"), base.increment("B")
    >>> a.concurrent_with(b), a.merge(b).dominates(a), a.merge(b)
    (True, True, VersionVector({'A': 2, 'B': 1}))
    """

    __slots__ = ("_d", "_hash")
    _d: dict[ReplicaId, int]
    _hash: int | None

    def __init__(self, entries: Entries = ()) -> None:
        items: Iterable[tuple[ReplicaId, int]] = (
            entries.items() if isinstance(entries, Mapping) else entries
        )
        d: dict[ReplicaId, int] = {}
        for replica, count in items:
            c = _entry(replica, count)
            if replica in d:
                raise ValueError(f"replica {replica!r} given twice")
            if c:
                d[replica] = c
        self._d = d
        self._hash = None

    @classmethod
    def _wrap(cls, d: dict[ReplicaId, int]) -> VersionVector:
        # NOTE: trusted fast path; d must be fresh and hold only non-zero entries.
        obj = object.__new__(cls)
        obj._d = d
        obj._hash = None
        return obj

    def __getitem__(self, replica: ReplicaId) -> int:
        return self._d.get(replica, 0)

    def replicas(self) -> tuple[ReplicaId, ...]:
        """The replicas with a non-zero entry, in :func:`replica_key` order."""
        return tuple(sorted(self._d, key=replica_key))

    def as_dict(self) -> dict[ReplicaId, int]:
        """The non-zero entries, in :func:`replica_key` order."""
        return {r: self._d[r] for r in self.replicas()}

    def total(self) -> int:
        """The number of updates summarised (sum of entries)."""
        return sum(self._d.values())

    def increment(self, replica: ReplicaId) -> VersionVector:
        """The vector after ``replica`` originates one more update."""
        replica_key(replica)
        d = dict(self._d)
        d[replica] = d.get(replica, 0) + 1
        return VersionVector._wrap(d)

    def merge(self, other: VersionVector) -> VersionVector:
        """Entry-wise maximum: the least vector dominating both."""
        self._check(other)
        d = dict(self._d)
        for r, c in other._d.items():
            if c > d.get(r, 0):
                d[r] = c
        return VersionVector._wrap(d)

    def compare(self, other: VersionVector) -> Order:
        """BEFORE if ``other`` strictly dominates ``self``, AFTER if the reverse, else EQUAL or
        CONCURRENT."""
        self._check(other)
        a, b = self._d, other._d
        a_gt = any(c > b.get(r, 0) for r, c in a.items())
        b_gt = any(c > a.get(r, 0) for r, c in b.items())
        if a_gt and b_gt:
            return Order.CONCURRENT
        if a_gt:
            return Order.AFTER
        return Order.BEFORE if b_gt else Order.EQUAL

    def dominates(self, other: VersionVector) -> bool:
        """True if ``self[r] >= other[r]`` for every replica (so equal vectors dominate)."""
        return self.compare(other) in (Order.AFTER, Order.EQUAL)

    def concurrent_with(self, other: VersionVector) -> bool:
        """True if neither vector dominates the other: concurrent (conflicting) updates."""
        return self.compare(other) is Order.CONCURRENT

    def _check(self, other: object) -> None:
        if not isinstance(other, VersionVector):
            raise TypeError(f"expected a VersionVector, got {type(other).__name__}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._d == other._d

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"VersionVector({self.as_dict()})"


# NOTE: no slots=True: with slots, Operation[int](...) raises TypeError on CPython 3.11–3.13
# (typing sets __orig_class__; the frozen slotted __setattr__ then fails).
@dataclass(frozen=True)
class Operation(Generic[P]):
    """An operation broadcast by replica ``src``, carrying the originator's vector ``vv``."""

    src: ReplicaId
    vv: VersionVector
    payload: P

    def __post_init__(self) -> None:
        replica_key(self.src)
        if not isinstance(self.vv, VersionVector):
            raise TypeError(f"Operation.vv must be a VersionVector, got {type(self.vv).__name__}")
        if self.vv[self.src] < 1:
            raise ValueError(f"Operation from {self.src!r} needs vv[{self.src!r}] >= 1")

    @property
    def seq(self) -> int:
        """The operation's sequence number at its originator, ``vv[src]``."""
        return self.vv[self.src]


def broadcast(vv: VersionVector, src: ReplicaId, payload: P) -> tuple[VersionVector, Operation[P]]:
    """Algorithm 3, lines 1–3: increment ``vv[src]`` and attach the vector to the operation.

    Returns the originator's new vector and the operation to broadcast (the originator
    applies ``payload`` to its own state itself).
    """
    new = vv.increment(src)
    return new, Operation(src, new, payload)


def receive(vv: VersionVector, op: Operation[P]) -> VersionVector:
    """Algorithm 3, line 5: ``vv[op.src] = max(vv[op.src], op.vv[op.src])``.

    The caller then applies ``op.payload`` (line 6). See the module notes on ordering.
    """
    if op.seq <= vv[op.src]:
        return vv
    d = dict(vv._d)
    d[op.src] = op.seq
    return VersionVector._wrap(d)


def is_delivered(vv: VersionVector, op: Operation[P]) -> bool:
    """True if ``op`` was already received (exact when delivery is causal or FIFO)."""
    return op.seq <= vv[op.src]


def is_causally_ready(vv: VersionVector, op: Operation[P]) -> bool:
    """True if ``op`` is the next operation of its source and every operation it depends on
    (from other replicas) was already received: ``op.vv[src] == vv[src] + 1`` and
    ``op.vv[r] <= vv[r]`` for every other ``r``."""
    if op.seq != vv[op.src] + 1:
        return False
    return all(c <= vv[r] for r, c in op.vv.as_dict().items() if r != op.src)
