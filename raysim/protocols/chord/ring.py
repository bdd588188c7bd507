"""Chord's identifier circle: node and key identifiers, ideal pointers, finger tables.

Pure functions shared by the Chord protocol (:mod:`raysim.protocols.chord.protocol`), its analysis
and its tests; no engine, no Ray. Node identifiers are placed one of three ways
(:func:`placement_ids`, the protocol's ``placement`` and ``ids`` parameters):

* ``placement = "seed"`` (default): drawn from the run's seed (:func:`seeded_ids`), so every
  seed of an experiment is a different ring and the same seed is the same ring;
* ``placement = "index"``: node ``n`` sits at ``HashRing([n], vnodes=1, bits=m)``'s position,
  the top ``m`` bits of SHA-1 of the label ``"i:<n>#0"`` (the same ring for every seed);
* ``ids = [...]``: listed explicitly, one per node (textbook rings such as the Chord paper's
  nodes 0, 1, 3 on a 3-bit circle).

Stored key ``i`` (an integer, ``0 <= i < K``) sits at the top ``m`` bits of its SplitMix64
hash, as ``HashRing.positions`` places integer keys, unless the key identifiers are listed
(``keys = [...]``); a lookup key is an identifier drawn uniformly from ``0 .. 2^m - 1``, or a
random stored key when there are stored keys.

Intervals are clockwise on the circle of ``2^m`` identifiers. The helper :func:`span`
measures the clockwise distance from ``a`` to ``b`` in ``1 .. 2^m`` (``a == b`` is a full
turn), so ``x`` lies in the half-open interval ``(a, b]`` exactly when
``span(a, x) <= span(a, b)``; with ``a == b`` that interval is the whole circle, as in
Chord's pseudo-code.

``python -m raysim.analysis.chord fingers --nodes 8 --bits 6`` prints the finger tables of
the course's 8-node ring (identifiers of 6 bits) with :func:`format_finger_tables`.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from raysim.values.ring import hash_key, hash_keys

__all__ = [
    "IdealRing",
    "check_ids",
    "finger_rows",
    "format_finger_tables",
    "ideal_ring",
    "key_positions",
    "node_id",
    "node_ids",
    "placement_ids",
    "seeded_ids",
    "span",
]


def node_id(node: int, m: int) -> int:
    """The m-bit identifier of ``node`` (its single virtual node on :mod:`raysim.values.ring`)."""
    return hash_key(f"i:{node}#0") >> (64 - m)


@lru_cache(maxsize=8)
def node_ids(n_nodes: int, m: int) -> tuple[int, ...]:
    """Identifiers of nodes ``0 .. n_nodes - 1`` (memoised: a pure function of its arguments)."""
    return tuple(node_id(n, m) for n in range(n_nodes))


@lru_cache(maxsize=8)
def seeded_ids(n_nodes: int, m: int, seed: int) -> tuple[int, ...]:
    """Distinct m-bit identifiers of nodes ``0 .. n_nodes - 1`` drawn from the run's ``seed``.

    Node n's identifier is the top m bits of SplitMix64(n XOR s), s a 64-bit hash of the
    seed; a node whose identifier a lower-numbered node already holds draws again with the
    next salt, so the identifiers are distinct whenever ``n_nodes <= 2^m``. Memoised.
    """
    if n_nodes > 1 << m:
        raise ValueError(f"m = {m} bits holds {1 << m} identifiers, fewer than {n_nodes} nodes")
    base = np.uint64(hash_key(f"chord-ids:{seed}"))
    nodes = np.arange(n_nodes, dtype=np.uint64)
    ids = np.zeros(n_nodes, dtype=np.int64)
    todo = np.arange(n_nodes)
    taken: set[int] = set()
    salt = 0
    while len(todo):
        mix = np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        draw = (hash_keys(nodes[todo] ^ base ^ mix) >> np.uint64(64 - m)).astype(np.int64)
        again = []
        for node, x in zip(todo.tolist(), draw.tolist(), strict=True):  # in node order
            if x in taken:
                again.append(node)
            else:
                taken.add(x)
                ids[node] = x
        todo = np.asarray(again, dtype=np.int64)
        salt += 1
    return tuple(ids.tolist())


def check_ids(ids: Sequence[int], m: int, n_nodes: int | None = None) -> None:
    """ValueError (one line) unless ``ids`` are ``n_nodes`` distinct m-bit identifiers."""
    if n_nodes is not None and len(ids) != n_nodes:
        raise ValueError(f"ids lists {len(ids)} identifiers for {n_nodes} nodes; list one per node")
    seen: dict[int, int] = {}
    for node, x in enumerate(ids):
        if not 0 <= x < 1 << m:
            raise ValueError(
                f"ids: node {node}'s identifier {x} is outside 0..{(1 << m) - 1} (m = {m})"
            )
        if x in seen:
            raise ValueError(f"ids: nodes {seen[x]} and {node} share identifier {x}")
        seen[x] = node


def placement_ids(
    n_nodes: int, m: int, placement: str = "index", seed: int = 0, ids: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The identifiers of nodes ``0 .. n_nodes - 1``: listed (``ids``), drawn from ``seed``
    (``placement = "seed"``) or hashed from the node index (``"index"``)."""
    if ids is not None:
        check_ids(ids, m, n_nodes)
        return tuple(int(x) for x in ids)
    if placement == "seed":
        return seeded_ids(n_nodes, m, seed)
    return node_ids(n_nodes, m)


def span(a: int, b: int, mask: int) -> int:
    """Clockwise distance from identifier ``a`` to ``b`` in ``1 .. mask + 1`` (a == b: a turn)."""
    return ((b - a - 1) & mask) + 1


@lru_cache(maxsize=8)
def key_positions(n_keys: int, m: int) -> tuple[int, ...]:
    """Sorted identifiers of the stored keys ``0 .. n_keys - 1`` (memoised)."""
    pos = np.sort(hash_keys(np.arange(n_keys, dtype=np.int64)) >> np.uint64(64 - m))
    return tuple(pos.tolist())


@dataclass(frozen=True, eq=False)
class IdealRing:
    """Every node up and every pointer exact: sorted identifiers and the nodes at them."""

    m: int
    ids: tuple[int, ...]  # sorted identifiers
    nodes: tuple[int, ...]  # node at each sorted identifier
    rank: dict[int, int]  # node -> index into ids/nodes
    ids_array: np.ndarray  # ids as int64, for vectorised successor lookups
    nodes_array: np.ndarray  # nodes as int64

    def successor(self, position: int) -> int:
        """The node at the first identifier at or clockwise after ``position``."""
        i = bisect.bisect_left(self.ids, position)
        return self.nodes[i % len(self.nodes)]

    def predecessor(self, node: int) -> int:
        """The node just before ``node`` on the circle."""
        return self.nodes[self.rank[node] - 1]

    def successors(self, node: int, r: int) -> list[int]:
        """The ``r`` nodes after ``node`` (fewer if the ring is smaller), nearest first."""
        k, n = self.rank[node], len(self.nodes)
        return [self.nodes[(k + j) % n] for j in range(1, min(r, n - 1) + 1)]

    def fingers(self, node: int) -> list[int]:
        """``finger[i] = successor(id + 2^i)`` for ``i = 0 .. m-1``."""
        me = self.ids[self.rank[node]]
        starts = (me + (np.int64(1) << np.arange(self.m, dtype=np.int64))) & ((1 << self.m) - 1)
        at = np.searchsorted(self.ids_array, starts, side="left")
        return list(self.nodes_array[at % len(self.nodes)].tolist())

    def keys_of(self, node: int, keys: Sequence[int]) -> list[int]:
        """The identifiers among sorted ``keys`` that ``node`` owns: those in (pred, node]."""
        k = self.rank[node]
        if len(self.ids) == 1:
            return list(keys)
        lo, hi = self.ids[k - 1], self.ids[k]
        a, b = bisect.bisect_right(keys, lo), bisect.bisect_right(keys, hi)
        if lo < hi:
            return list(keys[a:b])
        return list(keys[a:]) + list(keys[:b])  # the arc wraps past zero


def ideal_ring(n_nodes: int, m: int, ids: Sequence[int] | None = None) -> IdealRing:
    """The ring of all ``n_nodes`` nodes at ``ids`` (default: the index-hashed identifiers);
    ValueError if two share an identifier."""
    last = _LAST_RING[0]
    if last is not None and last[0] is ids and type(ids) is tuple and last[1:3] == (n_nodes, m):
        # NOTE: every node of a run asks with the run's one identifier tuple: no rehashing
        # of its N identifiers (for the memo below) on each node's start
        return last[3]
    ring = _ideal_ring(n_nodes, m, tuple(node_ids(n_nodes, m) if ids is None else ids))
    if type(ids) is tuple:
        _LAST_RING[0] = (ids, n_nodes, m, ring)
    return ring


_LAST_RING: list[tuple[tuple[int, ...], int, int, IdealRing] | None] = [None]


@lru_cache(maxsize=4)
def _ideal_ring(n_nodes: int, m: int, ids: tuple[int, ...]) -> IdealRing:
    order = sorted(range(n_nodes), key=lambda n: ids[n])
    sorted_ids = tuple(ids[n] for n in order)
    for a, b in itertools.pairwise(sorted_ids):
        if a == b:
            clash = [n for n in order if ids[n] == a]
            raise ValueError(
                f"m = {m} bits is too few for {n_nodes} nodes: nodes {clash[0]} and {clash[1]} "
                f"share identifier {a}; raise m, or use placement = \"seed\" or explicit ids"
            )
    return IdealRing(m, sorted_ids, tuple(order), {n: i for i, n in enumerate(order)},
                     np.asarray(sorted_ids, dtype=np.int64), np.asarray(order, dtype=np.int64))


def finger_rows(ring: IdealRing, node: int) -> list[tuple[int, int, int, int, int]]:
    """Finger table of ``node`` as ``(i, start, end, successor node, successor id)`` rows:
    finger ``i`` covers ``[start, end)`` with ``start = id + 2^i``."""
    me, size = ring.ids[ring.rank[node]], 1 << ring.m
    rows = []
    for i, succ in enumerate(ring.fingers(node)):
        start, end = (me + (1 << i)) % size, (me + (1 << (i + 1))) % size
        rows.append((i, start, end, succ, ring.ids[ring.rank[succ]]))
    return rows


def format_finger_tables(
    n_nodes: int = 8, m: int = 6, ids: Sequence[int] | None = None,
    keys: Sequence[int] | None = None,
) -> str:
    """The finger tables of every node of an ``n_nodes`` ring with m-bit identifiers (at
    ``ids`` if given, else index-hashed), and which node holds each of ``keys``."""
    ring = ideal_ring(n_nodes, m, ids)
    lines = [f"Chord ring: {n_nodes} nodes, m = {m} (identifiers 0..{(1 << m) - 1})",
             "node -> id: " + ", ".join(f"{n}->{i}" for i, n in zip(ring.ids, ring.nodes,
                                                                    strict=True))]
    if keys:
        owners = [ring.successor(k % (1 << m)) for k in keys]
        lines.append("key -> node (id): " + ", ".join(
            f"{k}->{o} ({ring.ids[ring.rank[o]]})" for k, o in zip(keys, owners, strict=True)))
    for node in ring.nodes:
        me = ring.ids[ring.rank[node]]
        pred = ring.predecessor(node)
        lines.append("")
        lines.append(f"node {node} (id {me}); predecessor node {pred} "
                     f"(id {ring.ids[ring.rank[pred]]}); keys ({ring.ids[ring.rank[pred]]}, {me}]")
        lines.append("   i  start  interval    successor")
        for i, start, end, succ, sid in finger_rows(ring, node):
            lines.append(f"  {i:2d}  {start:5d}  [{start},{end})".ljust(26)
                         + f"node {succ} (id {sid})")
    return "\n".join(lines)
