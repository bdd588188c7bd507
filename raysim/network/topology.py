"""Who knows whom: full membership, or a static random overlay of k neighbours per node.

A node's neighbour list is a pure function of (run seed, node id), computed with the
counter-based hash of :mod:`raysim.values.rng`, so each shard builds the rows of its own nodes and
every layout sees the same overlay.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import overload

import numpy as np

from raysim.values.rng import derive, uniform_array

TOPOLOGY_STREAM = 0x70F0


class AllBut(Sequence[int]):
    """The ids ``0..n-1`` without ``me``: full membership seen from one node, in O(1) memory."""

    __slots__ = ("_me", "_n")

    def __init__(self, n: int, me: int) -> None:
        self._n = n
        self._me = me

    def __len__(self) -> int:
        return self._n - 1

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> list[int]: ...
    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n - 1))]
        if i < 0:
            i += self._n - 1
        if not 0 <= i < self._n - 1:
            raise IndexError(i)
        return i + (i >= self._me)


def random_overlay(seed: int, n_nodes: int, degree: int, nodes: np.ndarray) -> np.ndarray:
    """The neighbour rows (``len(nodes)`` × ``degree``, int32) of a random k-out overlay.

    Each row holds ``degree`` distinct uniformly random other nodes; duplicates are redrawn
    from fresh hash draws until none remain.
    """
    if degree >= n_nodes:
        raise ValueError(f"degree ({degree}) must be below the number of nodes ({n_nodes})")
    key = derive(seed, TOPOLOGY_STREAM)
    rows = np.repeat(nodes.astype(np.int64), degree)
    slots = np.tile(np.arange(degree, dtype=np.int64), len(nodes))

    def draw(attempt: int, r: np.ndarray, s: np.ndarray) -> np.ndarray:
        u = uniform_array(key, r, s, np.full(r.shape, attempt, dtype=np.int64))
        v = np.minimum((u * (n_nodes - 1)).astype(np.int64), n_nodes - 2)
        return v + (v >= r)  # skip the node itself

    adj = draw(0, rows, slots).reshape(len(nodes), degree)
    attempt = 1
    while True:
        order = np.argsort(adj, axis=1, kind="stable")
        srt = np.take_along_axis(adj, order, axis=1)
        dup_sorted = np.zeros_like(srt, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        if not dup_sorted.any():
            break
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        ri, ci = np.nonzero(dup)
        adj[ri, ci] = draw(attempt, nodes[ri].astype(np.int64), ci.astype(np.int64))
        attempt += 1
    return adj.astype(np.int32)


class Topology:
    """The peer views of a block of nodes ``lo..hi-1``."""

    def __init__(self, kind: str, seed: int, n_nodes: int, degree: int, lo: int, hi: int) -> None:
        self.kind = kind
        self.n = n_nodes
        self.lo = lo
        self.adj: np.ndarray | None = None
        self.flat: array[int] | None = None  # row-major neighbours, fast to index from Python
        self.degree = 0
        if kind == "random":
            self.adj = random_overlay(seed, n_nodes, degree, np.arange(lo, hi))
            self.flat = array("i", self.adj.ravel().tobytes())
            self.degree = degree
        elif kind != "full":
            raise ValueError(f"unknown topology {kind!r}; allowed: full, random")

    def peers(self, node: int) -> Sequence[int]:
        """The neighbours of ``node``."""
        if self.adj is None:
            return AllBut(self.n, node)
        k = self.degree
        assert self.flat is not None
        return self.flat[(node - self.lo) * k : (node - self.lo + 1) * k].tolist()
