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

from raysim.values.rng import GOLDEN, derive, mix64_inplace, words_to_unit

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
    from fresh hash draws until none remain. Slot ``s`` of node ``r``'s row, on attempt
    ``a``, draws ``uniform_array(key, r, s, a)``; every row depends on its node alone.
    """
    if degree >= n_nodes:
        raise ValueError(f"degree ({degree}) must be below the number of nodes ({n_nodes})")
    key = derive(seed, TOPOLOGY_STREAM)
    nodes = nodes.astype(np.int64)
    out = np.empty((len(nodes), degree), dtype=np.int32)
    # NOTE: rows are drawn a block at a time (every row is a function of its node alone):
    # at 10^6 nodes x 20 the whole-array version peaked at ~1 GiB of temporaries.
    for at in range(0, len(nodes), _BLOCK):
        out[at : at + _BLOCK] = _overlay_rows(key, n_nodes, degree, nodes[at : at + _BLOCK])
    return out


_BLOCK = 1 << 15  # rows drawn at once by random_overlay


def _overlay_rows(key: int, n_nodes: int, degree: int, nodes: np.ndarray) -> np.ndarray:
    """The rows of ``nodes`` (int64), as :func:`random_overlay` defines them."""
    g = np.uint64(GOLDEN)
    with np.errstate(over="ignore"):
        # uniform_array(key, r, s, a) = mix(mix(mix(key ^ mix(r+G)) ^ mix(s+G)) ^ mix(a+G)):
        # the node and slot factors are computed once per node and once per slot.
        per_node = mix64_inplace(mix64_inplace(nodes.astype(np.uint64) + g) ^ np.uint64(key))
        per_slot = mix64_inplace(np.arange(degree, dtype=np.uint64) + g)

        def draw(attempt: int, r: np.ndarray, s: np.ndarray) -> np.ndarray:
            h = mix64_inplace(per_node[r] ^ per_slot[s])
            h ^= mix64_inplace(np.array([attempt], dtype=np.uint64) + g)
            u = words_to_unit(mix64_inplace(h))
            v = np.minimum((u * (n_nodes - 1)).astype(np.int64), n_nodes - 2)
            return v + (v >= nodes[r])  # skip the node itself

        m = len(nodes)
        rows = np.repeat(np.arange(m), degree)
        adj = draw(0, rows, np.tile(np.arange(degree), m)).reshape(m, degree)
    srt = np.sort(adj, axis=1)
    bad = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))  # rows with a duplicate
    attempt = 1
    while len(bad):
        sub = adj[bad]
        order = np.argsort(sub, axis=1, kind="stable")
        srt = np.take_along_axis(sub, order, axis=1)
        dup_sorted = np.zeros_like(srt, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        keep = dup_sorted.any(axis=1)
        bad, sub, order, dup_sorted = bad[keep], sub[keep], order[keep], dup_sorted[keep]
        if not len(bad):
            break
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        ri, ci = np.nonzero(dup)  # every copy of a value after its first, in slot order
        with np.errstate(over="ignore"):
            adj[bad[ri], ci] = draw(attempt, bad[ri], ci)
        attempt += 1
    return adj


class Topology:
    """The peer views of a block of nodes ``lo..hi-1``."""

    def __init__(self, kind: str, seed: int, n_nodes: int, degree: int, lo: int, hi: int) -> None:
        self.kind = kind
        self.n = n_nodes
        self.lo = lo
        self.adj: np.ndarray | None = None
        self._flat: array[int] | None = None
        self.degree = 0
        if kind == "random":
            self.adj = random_overlay(seed, n_nodes, degree, np.arange(lo, hi))
            self.degree = degree
        elif kind != "full":
            raise ValueError(f"unknown topology {kind!r}; allowed: full, random")

    @property
    def flat(self) -> array[int] | None:
        """The neighbours row-major as an ``array('i')``, fast to index from Python (the
        per-node driver's view; built on first use, so a columnar run never pays for it)."""
        if self._flat is None and self.adj is not None:
            self._flat = array("i", self.adj.ravel().tobytes())
        return self._flat

    def peers(self, node: int) -> Sequence[int]:
        """The neighbours of ``node``."""
        if self.adj is None:
            return AllBut(self.n, node)
        k = self.degree
        assert self.flat is not None
        return self.flat[(node - self.lo) * k : (node - self.lo + 1) * k].tolist()
