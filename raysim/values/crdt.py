"""State-based CRDTs (convergent replicated data types) as immutable values.

Theory of operation
-------------------
Following M. Shapiro, N. Preguiça, C. Baquero and M. Zawirski, "A comprehensive study of
Convergent and Commutative Replicated Data Types", INRIA RR-7506, 2011 (§2.2, §3), a
state-based CRDT is a set of states forming a join-semilattice: ``merge`` is the least upper
bound — commutative, associative and idempotent — and every update is *inflationary* (the new
state is ≥ the old one). Replicas that eventually see the same updates, shipped as whole
states in any order and any number of times (anti-entropy or gossip), then hold equal states.

Every type here is a frozen dataclass: updates and ``merge`` return new values and never
mutate; ``value`` is the query. Merging two different CRDT types raises ``TypeError``.
Replica ids are ``int`` or ``str`` (see :func:`raysim.values.versions.replica_key`); set
elements and register values must be hashable.

Types and their conflict rules:

* :class:`GCounter` — one count per replica, merged by maximum (Shapiro Spec. 6).
* :class:`PNCounter` — a pair of G-Counters, increments minus decrements (Spec. 7).
* :class:`GSet` — grow-only set, merged by union (Spec. 11).
* :class:`TwoPSet` — added and removed G-Sets; an element removed once stays removed, and
  only a present element may be removed (Spec. 12).
* :class:`LWWRegister` — the write with the greatest ``(timestamp, replica)`` wins: equal
  timestamps are broken by replica id (:func:`~raysim.values.versions.replica_key` order, greatest
  wins). Two writes with the same timestamp *and* replica but different values are a misuse
  (stamps must be unique) and raise ``ValueError`` (Spec. 8).
* :class:`LWWElementSet` — keeps the latest add and remove timestamp of each element; an
  element is present iff its latest add is not older than its latest remove, so **an add and
  a remove with equal timestamps resolve in favour of the add** (add bias), as in Shapiro's
  LWW-element-Set lookup.
* :class:`ORSet` — observed-remove set: each add creates a unique tag ``(replica, counter)``;
  a remove tombstones only the tags it has observed, so an add concurrent with a remove wins
  (Spec. 15).
* :class:`MVRegister` — multi-value register: each write carries a version vector that
  dominates every version it overwrote; merge keeps the writes not dominated by another, so
  concurrent writes are all kept until a later write supersedes them (Spec. 10).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, Self, TypeVar, cast

from raysim.values._checks import non_negative_int
from raysim.values.versions import ReplicaId, VersionVector, replica_key

__all__ = [
    "GCounter",
    "GSet",
    "LWWElementSet",
    "LWWRegister",
    "MVRegister",
    "ORSet",
    "PNCounter",
    "StateCRDT",
    "TwoPSet",
]

E = TypeVar("E", bound=Hashable)
T = TypeVar("T", bound=Hashable)
K = TypeVar("K", bound=Hashable)
Tag = tuple[ReplicaId, int]

# NOTE (generic types): GSet, TwoPSet, LWWElementSet, ORSet, LWWRegister and MVRegister are
# frozen dataclasses *without* slots=True. Calling a subscripted generic (ORSet[str]()) makes
# typing set __orig_class__ on the instance; the __setattr__ of a frozen *slotted* dataclass
# then raises TypeError instead of the AttributeError that typing ignores (CPython 3.11-3.13).


def _frozen_map(entries: Mapping[K, int], what: str) -> Mapping[K, int]:
    """A read-only copy of ``entries`` with validated non-negative int values."""
    return MappingProxyType({k: non_negative_int(v, f"{what}[{k!r}]") for k, v in entries.items()})


def _max_merge(a: Mapping[K, int], b: Mapping[K, int]) -> dict[K, int]:
    d = dict(a)
    for k, v in b.items():
        if v > d.get(k, -1):
            d[k] = v
    return d


class StateCRDT(ABC):
    """Base of the state-based CRDTs: an immutable join-semilattice value."""

    __slots__ = ()

    @abstractmethod
    def merge(self, other: Self) -> Self:
        """The least upper bound of two states of the same type (does not mutate)."""

    @property
    @abstractmethod
    def value(self) -> object:
        """The query: the value the state represents."""

    def _check_same_type(self, other: object) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")


# --------------------------------------------------------------------------- counters


@dataclass(frozen=True, slots=True)
class GCounter(StateCRDT):
    """Grow-only counter.

    >>> a, b = GCounter().increment("A"), GCounter().increment("B", 2)
    >>> a.merge(b).value, a.merge(b) == b.merge(a)
    (3, True)
    """

    counts: Mapping[ReplicaId, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.counts:
            replica_key(r)
        frozen = _frozen_map(self.counts, "GCounter.counts")
        d = {r: frozen[r] for r in sorted(frozen, key=replica_key) if frozen[r]}
        object.__setattr__(self, "counts", MappingProxyType(d))

    def increment(self, replica: ReplicaId, amount: int = 1) -> GCounter:
        """Add ``amount`` (>= 1) to the count of ``replica``."""
        if non_negative_int(amount, "amount") < 1:
            raise ValueError(f"amount must be >= 1, got {amount}")
        d = dict(self.counts)
        d[replica] = d.get(replica, 0) + amount
        return GCounter(d)

    @property
    def value(self) -> int:
        """The sum of all replicas' counts."""
        return sum(self.counts.values())

    def merge(self, other: GCounter) -> GCounter:
        """Per-replica maximum."""
        self._check_same_type(other)
        return GCounter(_max_merge(self.counts, other.counts))

    def __hash__(self) -> int:
        return hash(frozenset(self.counts.items()))

    def __repr__(self) -> str:
        return f"GCounter({dict(self.counts)!r})"


@dataclass(frozen=True, slots=True)
class PNCounter(StateCRDT):
    """Counter with increments (``p``) and decrements (``n``), each a :class:`GCounter`.

    >>> PNCounter().increment("A", 5).decrement("B", 2).value
    3
    """

    p: GCounter = GCounter()
    n: GCounter = GCounter()

    def __post_init__(self) -> None:
        if not isinstance(self.p, GCounter) or not isinstance(self.n, GCounter):
            raise TypeError("PNCounter.p and PNCounter.n must be GCounters")

    def increment(self, replica: ReplicaId, amount: int = 1) -> PNCounter:
        """Add ``amount`` (>= 1)."""
        return PNCounter(self.p.increment(replica, amount), self.n)

    def decrement(self, replica: ReplicaId, amount: int = 1) -> PNCounter:
        """Subtract ``amount`` (>= 1)."""
        return PNCounter(self.p, self.n.increment(replica, amount))

    @property
    def value(self) -> int:
        """Increments minus decrements."""
        return self.p.value - self.n.value

    def merge(self, other: PNCounter) -> PNCounter:
        """Merge increments and decrements separately."""
        self._check_same_type(other)
        return PNCounter(self.p.merge(other.p), self.n.merge(other.n))


# --------------------------------------------------------------------------- sets


@dataclass(frozen=True)  # no slots: see NOTE (generic types)
class GSet(StateCRDT, Generic[E]):
    """Grow-only set.

    >>> sorted(GSet().add("x").merge(GSet().add("y")).value)
    ['x', 'y']
    """

    elements: frozenset[E] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", frozenset(self.elements))

    def add(self, element: E) -> GSet[E]:
        """Add ``element``."""
        return GSet(self.elements | {element})

    @property
    def value(self) -> frozenset[E]:
        """The elements."""
        return self.elements

    def __contains__(self, element: object) -> bool:
        return element in self.elements

    def merge(self, other: GSet[E]) -> GSet[E]:
        """Union."""
        self._check_same_type(other)
        return GSet(self.elements | other.elements)


@dataclass(frozen=True)  # no slots: see NOTE (generic types)
class TwoPSet(StateCRDT, Generic[E]):
    """Two-phase set: once removed, an element can never be added again (the add is a no-op).

    >>> s = TwoPSet().add("x").add("y").remove("x")
    >>> sorted(s.value), sorted(s.add("x").value)
    (['y'], ['y'])
    """

    added: frozenset[E] = frozenset()
    removed: frozenset[E] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "added", frozenset(self.added))
        object.__setattr__(self, "removed", frozenset(self.removed))
        if not self.removed <= self.added:
            extra = sorted(map(repr, self.removed - self.added))
            raise ValueError(f"TwoPSet: removed elements never added: {', '.join(extra)}")

    def add(self, element: E) -> TwoPSet[E]:
        """Add ``element`` (no effect if it was ever removed)."""
        return TwoPSet(self.added | {element}, self.removed)

    def remove(self, element: E) -> TwoPSet[E]:
        """Remove ``element``, which must be present (2P-Set precondition)."""
        if element not in self:
            raise ValueError(f"cannot remove {element!r} from TwoPSet: it is not in the set")
        return TwoPSet(self.added, self.removed | {element})

    @property
    def value(self) -> frozenset[E]:
        """Added and not removed."""
        return self.added - self.removed

    def __contains__(self, element: object) -> bool:
        return element in self.added and element not in self.removed

    def merge(self, other: TwoPSet[E]) -> TwoPSet[E]:
        """Union of both components."""
        self._check_same_type(other)
        return TwoPSet(self.added | other.added, self.removed | other.removed)


@dataclass(frozen=True)  # no slots: see NOTE (generic types)
class LWWElementSet(StateCRDT, Generic[E]):
    """Last-writer-wins element set; an add and a remove at the same timestamp: add wins.

    >>> s = LWWElementSet().add("x", 1).remove("x", 2).add("y", 3).remove("y", 3)
    >>> sorted(s.value)
    ['y']
    """

    adds: Mapping[E, int] = field(default_factory=dict)
    removes: Mapping[E, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adds", _frozen_map(self.adds, "LWWElementSet.adds"))
        object.__setattr__(self, "removes", _frozen_map(self.removes, "LWWElementSet.removes"))

    def add(self, element: E, timestamp: int) -> LWWElementSet[E]:
        """Record an add of ``element`` at ``timestamp`` (>= 0)."""
        ts = non_negative_int(timestamp, "timestamp")
        return LWWElementSet(_max_merge(self.adds, {element: ts}), self.removes)

    def remove(self, element: E, timestamp: int) -> LWWElementSet[E]:
        """Record a remove of ``element`` at ``timestamp`` (>= 0); present or not."""
        ts = non_negative_int(timestamp, "timestamp")
        return LWWElementSet(self.adds, _max_merge(self.removes, {element: ts}))

    def __contains__(self, element: object) -> bool:
        e = cast(E, element)
        added = self.adds.get(e)
        return added is not None and added >= self.removes.get(e, -1)

    @property
    def value(self) -> frozenset[E]:
        """Elements whose latest add is at least as recent as their latest remove."""
        return frozenset(e for e, t in self.adds.items() if t >= self.removes.get(e, -1))

    def merge(self, other: LWWElementSet[E]) -> LWWElementSet[E]:
        """Per-element maximum of add and of remove timestamps."""
        self._check_same_type(other)
        return LWWElementSet(
            _max_merge(self.adds, other.adds), _max_merge(self.removes, other.removes)
        )

    def __hash__(self) -> int:
        return hash((frozenset(self.adds.items()), frozenset(self.removes.items())))

    def __repr__(self) -> str:
        return f"LWWElementSet(adds={dict(self.adds)!r}, removes={dict(self.removes)!r})"


@dataclass(frozen=True)  # no slots: see NOTE (generic types)
class ORSet(StateCRDT, Generic[E]):
    """Observed-remove set with unique tags ``(replica, counter)``; concurrent add wins.

    >>> a = ORSet().add("x", "A")
    >>> b = a.remove("x")            # B removed the "x" it had observed...
    >>> a2 = a.add("x", "A")         # ...while A added "x" again
    >>> sorted(b.merge(a2).value)
    ['x']
    """

    entries: frozenset[tuple[E, Tag]] = frozenset()
    tombstones: frozenset[Tag] = frozenset()

    def __post_init__(self) -> None:
        entries, tombstones = frozenset(self.entries), frozenset(self.tombstones)
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "tombstones", tombstones)
        owner: dict[Tag, E] = {}
        for element, tag in entries:
            replica_key(tag[0])
            if owner.setdefault(tag, element) != element:
                raise ValueError(
                    f"ORSet tag {tag!r} is attached to two elements "
                    f"({owner[tag]!r}, {element!r}): replica ids must be unique"
                )
        unknown = tombstones - owner.keys()
        if unknown:
            raise ValueError(f"ORSet tombstones for unknown tags: {sorted(unknown, key=repr)}")

    def add(self, element: E, replica: ReplicaId) -> ORSet[E]:
        """Add ``element`` with a fresh tag of ``replica``."""
        replica_key(replica)
        counter = max((c for _, (r, c) in self.entries if r == replica), default=0) + 1
        return ORSet(self.entries | {(element, (replica, counter))}, self.tombstones)

    def remove(self, element: E) -> ORSet[E]:
        """Tombstone every tag of ``element`` observed here (no effect if absent)."""
        observed = {tag for e, tag in self.entries if e == element}
        return ORSet(self.entries, self.tombstones | observed)

    def __contains__(self, element: object) -> bool:
        return any(e == element and t not in self.tombstones for e, t in self.entries)

    @property
    def value(self) -> frozenset[E]:
        """Elements with at least one tag not tombstoned."""
        return frozenset(e for e, t in self.entries if t not in self.tombstones)

    def merge(self, other: ORSet[E]) -> ORSet[E]:
        """Union of tagged adds and of tombstones."""
        self._check_same_type(other)
        return ORSet(self.entries | other.entries, self.tombstones | other.tombstones)


# --------------------------------------------------------------------------- registers


@dataclass(frozen=True)  # no slots: see NOTE (generic types)
class LWWRegister(StateCRDT, Generic[T]):
    """Last-writer-wins register; the greatest ``(timestamp, replica)`` wins.

    An unwritten register holds ``None`` with ``replica=None`` and loses to any write.

    >>> r = LWWRegister().assign("x", 5, "A")
    >>> r.merge(LWWRegister().assign("y", 5, "B")).value   # tie on 5: replica "B" > "A"
    'y'
    """

    payload: T | None = None
    timestamp: int = 0
    replica: ReplicaId | None = None

    def __post_init__(self) -> None:
        non_negative_int(self.timestamp, "LWWRegister.timestamp")
        if self.replica is None:
            if self.payload is not None or self.timestamp:
                raise ValueError("an unwritten LWWRegister has no payload and timestamp 0")
        else:
            replica_key(self.replica)

    @property
    def stamp(self) -> tuple[int, ReplicaId] | None:
        """``(timestamp, replica)`` of the winning write, or None if never written."""
        return None if self.replica is None else (self.timestamp, self.replica)

    def _key(self) -> tuple[int, tuple[int, int, str]] | None:
        return None if self.replica is None else (self.timestamp, replica_key(self.replica))

    def assign(self, value: T, timestamp: int, replica: ReplicaId) -> LWWRegister[T]:
        """Write ``value`` at ``timestamp`` from ``replica`` (lost if not the newest)."""
        return self.merge(LWWRegister(value, timestamp, replica))

    @property
    def value(self) -> T | None:
        """The winning write's value (None if never written)."""
        return self.payload

    def merge(self, other: LWWRegister[T]) -> LWWRegister[T]:
        """Keep the write with the greater ``(timestamp, replica)``."""
        self._check_same_type(other)
        a, b = self._key(), other._key()
        if a == b:
            if self.payload != other.payload:
                raise ValueError(
                    f"LWWRegister: two different writes share stamp {self.stamp}: "
                    "timestamps must be unique per replica"
                )
            return self
        if a is None:
            return other
        if b is None:
            return self
        return self if a > b else other


@dataclass(frozen=True)  # no slots: see NOTE (generic types)
class MVRegister(StateCRDT, Generic[T]):
    """Multi-value register: concurrent writes are all kept, each with its version vector.

    >>> base = MVRegister().assign("x", "A")
    >>> both = base.assign("y", "A").merge(base.assign("z", "B"))
    >>> sorted(both.value), sorted(both.assign("w", "B").value)
    (['y', 'z'], ['w'])
    """

    versions: frozenset[tuple[T, VersionVector]] = frozenset()

    def __post_init__(self) -> None:
        versions = frozenset(self.versions)
        for _, vv in versions:
            if not isinstance(vv, VersionVector):
                raise TypeError(f"MVRegister versions need VersionVectors, got {vv!r}")
        # Keep only the maximal writes: drop any strictly dominated by another.
        kept = frozenset(
            (v, vv)
            for v, vv in versions
            if not any(other.dominates(vv) and other != vv for _, other in versions)
        )
        object.__setattr__(self, "versions", kept)

    @property
    def vv(self) -> VersionVector:
        """The merged version vector of every write kept."""
        out = VersionVector()
        for _, vv in self.versions:
            out = out.merge(vv)
        return out

    def assign(self, value: T, replica: ReplicaId) -> MVRegister[T]:
        """Overwrite every value seen here with ``value``, written by ``replica``."""
        return MVRegister(frozenset({(value, self.vv.increment(replica))}))

    @property
    def value(self) -> frozenset[T]:
        """The concurrent values (empty if never written)."""
        return frozenset(v for v, _ in self.versions)

    def merge(self, other: MVRegister[T]) -> MVRegister[T]:
        """Union of writes, keeping those no other write dominates."""
        self._check_same_type(other)
        return MVRegister(self.versions | other.versions)
