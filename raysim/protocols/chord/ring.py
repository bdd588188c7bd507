"""Chord's identifier circle: node and key identifiers, ideal pointers, finger tables.

Pure functions shared by the Chord protocol (:mod:`raysim.protocols.chord.protocol`), its analysis
and its tests; no engine, no Ray. Identifiers follow the consistent-hash ring of
:mod:`raysim.values.ring`:

* node ``n`` sits at ``HashRing([n], vnodes=1, bits=m)``'s position, the top ``m`` bits of
  SHA-1 of the label ``"i:<n>#0"`` (one virtual node per physical node);
* stored key ``i`` (an integer, ``0 <= i < K``) sits at the top ``m`` bits of its
  SplitMix64 hash, as ``HashRing.positions`` places integer keys;
* a lookup key is an identifier, drawn uniformly from ``0 .. 2^m - 1``.

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
    "finger_rows",
    "format_finger_tables",
    "ideal_ring",
    "key_positions",
    "node_id",
    "node_ids",
    "span",
]


def node_id(node: int, m: int) -> int:
    """The m-bit identifier of ``node`` (its single virtual node on :mod:`raysim.values.ring`)."""
    return hash_key(f"i:{node}#0") >> (64 - m)


@lru_cache(maxsize=8)
def node_ids(n_nodes: int, m: int) -> tuple[int, ...]:
    """Identifiers of nodes ``0 .. n_nodes - 1`` (memoised: a pure function of its arguments)."""
    return tuple(node_id(n, m) for n in range(n_nodes))


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


@lru_cache(maxsize=4)
def ideal_ring(n_nodes: int, m: int) -> IdealRing:
    """The ring of all ``n_nodes`` nodes (memoised); ValueError if two share an identifier."""
    ids = node_ids(n_nodes, m)
    order = sorted(range(n_nodes), key=lambda n: ids[n])
    sorted_ids = tuple(ids[n] for n in order)
    for a, b in itertools.pairwise(sorted_ids):
        if a == b:
            clash = [n for n in order if ids[n] == a]
            raise ValueError(
                f"m = {m} bits is too few for {n_nodes} nodes: nodes {clash[0]} and {clash[1]} "
                f"share identifier {a}; raise m"
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


def format_finger_tables(n_nodes: int = 8, m: int = 6) -> str:
    """The finger tables of every node of an ``n_nodes`` ring with m-bit identifiers."""
    ring = ideal_ring(n_nodes, m)
    lines = [f"Chord ring: {n_nodes} nodes, m = {m} (identifiers 0..{(1 << m) - 1})",
             "node -> id: " + ", ".join(f"{n}->{i}" for i, n in zip(ring.ids, ring.nodes,
                                                                    strict=True))]
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
