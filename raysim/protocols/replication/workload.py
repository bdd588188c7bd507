"""Client writes on the toolkit's state-based CRDTs, their delta states, sizes and digests.

Used by :mod:`raysim.protocols.replication.anti_entropy`. Every write is an operation on one
replica's state that returns the new state *and* its delta state ``d`` with
``new = old ⊔ d`` (the delta-mutators of P. S. Almeida, A. Shoker and C. Baquero, "Delta
state replicated data types", JPDC 2018): the join of all deltas a replica receives equals
the join of the full states, so a digest exchange may ship deltas instead of states.

Also here: :class:`ArrivalRegister`, the deliberately wrong register whose merge keeps the
value of whichever state *arrived last* carrying something new (not commutative), the
negative example; :func:`size_of`, a byte count for a state (8 bytes per integer, 16 per
version-vector entry); :func:`value_hash`, a stable 53-bit hash of a CRDT's value, which the
log carries (exact in a float64) so that replicas can be compared from the log alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from raysim.values.crdt import GCounter, GSet, LWWRegister, MVRegister, ORSet, PNCounter
from raysim.values.rng import NodeRng
from raysim.values.versions import VersionVector

CRDTS = ("g_counter", "pn_counter", "g_set", "or_set", "lww_register", "mv_register",
         "arrival_register")
# The types whose converged value the sequential specification of the writes fixes alone
# (sums, unions, the greatest stamp); the others' depend on what each write had observed.
SPECIFIED = ("g_counter", "pn_counter", "g_set", "lww_register", "arrival_register")
SET_UNIVERSE = 1000  # g_set elements
OR_UNIVERSE = 20  # or_set elements (small, so removes meet concurrent adds)


@dataclass(frozen=True)
class ArrivalRegister:
    """NEGATIVE EXAMPLE: "last writer by arrival order"; its merge is not commutative.

    ``merge(other)`` takes ``other``'s value whenever ``other`` carries a write this replica
    had not seen, else keeps its own; the version vectors are joined. Two replicas that
    receive the same writes in different orders end with equal version vectors (nothing left
    to exchange) and different values: they never converge.
    """

    payload: int | None = None
    vv: VersionVector = field(default_factory=VersionVector)

    def merge(self, other: ArrivalRegister) -> ArrivalRegister:
        """Adopt ``other``'s value if it brings anything new; join the version vectors."""
        news = not self.vv.dominates(other.vv) and other.vv != self.vv
        return ArrivalRegister(other.payload if news else self.payload, self.vv.merge(other.vv))

    @property
    def value(self) -> int | None:
        """The value that arrived last."""
        return self.payload


def empty(crdt: str) -> Any:
    """The initial state of a replica."""
    return {
        "g_counter": GCounter, "pn_counter": PNCounter, "g_set": GSet, "or_set": ORSet,
        "lww_register": LWWRegister, "mv_register": MVRegister,
        "arrival_register": ArrivalRegister,
    }[crdt]()


def write(crdt: str, state: Any, node: int, now: int, count: int, rng: NodeRng
          ) -> tuple[Any, Any, int]:
    """One client write at ``node``: (new state, its delta state, the logged argument).

    The argument is the increment (negative: a decrement), the element added (``-1 - e``:
    removed), or the value written (``node * 10**6 + count``).
    """
    if crdt == "g_counter":
        a = 1 + rng.randrange(3)
        new = state.increment(node, a)
        return new, GCounter({node: new.counts[node]}), a
    if crdt == "pn_counter":
        a = 1 + rng.randrange(3)
        if rng.random() < 0.5:
            new = state.increment(node, a)
            return new, PNCounter(GCounter({node: new.p.counts[node]})), a
        new = state.decrement(node, a)
        return new, PNCounter(GCounter(), GCounter({node: new.n.counts[node]})), -a
    if crdt == "g_set":
        e = rng.randrange(SET_UNIVERSE)
        return state.add(e), GSet(frozenset({e})), e
    if crdt == "or_set":
        present = sorted(state.value)
        if present and rng.random() < 0.4:
            e = present[rng.randrange(len(present))]
            new = state.remove(e)
            seen = frozenset((x, t) for x, t in state.entries if x == e)
            return new, ORSet(seen, frozenset(t for _, t in seen)), -1 - e
        e = rng.randrange(OR_UNIVERSE)
        new = state.add(e, node)
        return new, ORSet(new.entries - state.entries), e
    v = node * 10**6 + count
    if crdt == "lww_register":
        new = state.assign(v, now, node)
        return new, new, v
    if crdt == "mv_register":
        new = state.assign(v, node)
        return new, new, v
    new = ArrivalRegister(v, state.vv.increment(node))
    return new, new, v


def size_of(state: Any) -> int:
    """Bytes to ship ``state``: 8 per integer, 16 per map or version-vector entry."""
    if isinstance(state, GCounter):
        return 16 * len(state.counts)
    if isinstance(state, PNCounter):
        return size_of(state.p) + size_of(state.n)
    if isinstance(state, GSet):
        return 8 * len(state.value)
    if isinstance(state, ORSet):
        return 24 * len(state.entries) + 16 * len(state.tombstones)
    if isinstance(state, LWWRegister):
        return 24
    if isinstance(state, MVRegister):
        return sum(8 + 16 * len(vv.replicas()) for _, vv in state.versions)
    if isinstance(state, ArrivalRegister):
        return 8 + 16 * len(state.vv.replicas())
    if isinstance(state, VersionVector):
        return 16 * len(state.replicas())
    raise TypeError(f"no size for {type(state).__name__}")


def value_hash(value: object) -> int:
    """A stable 53-bit hash of a CRDT value (an int, None, or a set of ints)."""
    if isinstance(value, frozenset | set):
        text = "s" + ",".join(str(v) for v in sorted(value))
    else:
        text = "v" + repr(value)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 11


def specified_value(crdt: str, args: list[int], times: list[int], nodes: list[int]) -> object:
    """The value the sequential specification of the writes gives (types in SPECIFIED).

    ``args``, ``times`` and ``nodes`` are the logged writes: the argument (see :func:`write`),
    when and where each was made.
    """
    if crdt in ("g_counter", "pn_counter"):
        return sum(args)
    if crdt == "g_set":
        return frozenset(args)
    if crdt in ("lww_register", "arrival_register"):
        if not args:
            return None
        # the greatest (timestamp, replica) wins; for the arrival register this is what a
        # correct register would hold, which it fails to
        return max(zip(times, nodes, args, strict=True))[2]
    raise ValueError(f"{crdt}: its value is not fixed by a sequential specification")
