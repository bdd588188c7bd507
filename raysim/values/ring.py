"""Consistent hashing: a ring of m-bit identifiers with virtual nodes, vectorised lookup.

Theory of operation
-------------------
Consistent hashing (D. Karger et al., "Consistent hashing and random trees", STOC 1997)
maps keys and nodes onto one circle of identifiers ``0 .. 2^m - 1``. A key belongs to its
*successor*: the first node identifier clockwise from the key's position (at or after it,
wrapping past zero), as in Chord (Stoica et al., SIGCOMM 2001). When a node joins, only the
keys between its predecessor and itself move, and they move to it; when it leaves, only its
keys move, to its successor. Each physical node is placed at ``vnodes`` positions (virtual
nodes) to even out the arc lengths it owns.

Hashing (stable across machines, platforms and Python runs; never Python's ``hash()``):

* a virtual node ``i`` of node ``n`` sits at SHA-1 of the UTF-8 label ``"i:<n>#<i>"`` (int
  node ids) or ``"s:<n>#<i>"`` (str node ids);
* a ``str`` key (UTF-8) or ``bytes`` key is hashed with SHA-1;
* an integer key is hashed with SplitMix64 (Steele, Lea and Flood, OOPSLA 2014): the key is
  taken modulo 2^64 (so ``-1`` and ``2**64 - 1`` are the same key), ``z = key + 0x9E37…7C15``
  and then the SplitMix64 finaliser, vectorised over numpy ``uint64`` arrays.

A 64-bit hash (the first 8 bytes of a SHA-1 digest, big-endian, or the SplitMix64 output) is
truncated to its top ``m`` bits (default m = 64). Virtual nodes that land on the same
identifier are ordered by node id, then vnode index; the first of them owns the identifier.

:class:`HashRing` is an immutable value: ``add_node``/``remove_node`` return a new ring.
:func:`key_moves` lists the keys whose owner differs between two rings, and
:func:`load_stats` summarises keys per physical node. NOTE: lookups are ``np.searchsorted``
over the sorted identifiers, so placing 10^6 integer keys costs about as much as one numpy
sort, not 10^6 Python calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "EmptyRingError",
    "HashRing",
    "KeyMoves",
    "LoadStats",
    "NodeId",
    "hash_key",
    "hash_keys",
    "key_moves",
    "keys_per_node",
    "load_stats",
    "splitmix64",
]

NodeId: TypeAlias = int | str
Key: TypeAlias = int | str | bytes
U64 = npt.NDArray[np.uint64]
NodeArray: TypeAlias = npt.NDArray[np.int64] | npt.NDArray[np.object_]

MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


class EmptyRingError(LookupError):
    """A key was looked up on a ring with no nodes."""


def splitmix64(x: npt.ArrayLike) -> U64:
    """SplitMix64 output for states ``x`` (uint64 arithmetic, wrapping), element-wise."""
    arr = np.asarray(x, dtype=np.uint64)
    # NOTE: computed on a 1-D view: numpy wraps array arithmetic silently but warns on
    # overflow of 0-d (scalar) operands.
    z = arr.reshape(-1) + _GOLDEN
    z = (z ^ (z >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    return np.asarray(z ^ (z >> _S31), dtype=np.uint64).reshape(arr.shape)


def _sha64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


def hash_key(key: Key) -> int:
    """The 64-bit hash of one key (see the module notes)."""
    if isinstance(key, str):
        return _sha64(key.encode("utf-8"))
    if isinstance(key, bytes):
        return _sha64(key)
    if isinstance(key, int | np.integer):
        k = int(key)
        if not -(1 << 63) <= k <= MASK64:
            raise ValueError(f"integer keys must fit in 64 bits, got {k}")
        # NOTE: plain-int SplitMix64, ~10x faster than numpy for one key; the tests check
        # that it agrees with the vectorised splitmix64.
        z = ((k & MASK64) + int(_GOLDEN)) & MASK64
        z = ((z ^ (z >> 30)) * int(_C1)) & MASK64
        z = ((z ^ (z >> 27)) * int(_C2)) & MASK64
        return z ^ (z >> 31)
    raise TypeError(f"keys must be int, str or bytes, got {type(key).__name__}")


def _key_array(keys: npt.ArrayLike) -> npt.NDArray[np.generic]:
    """``keys`` as a 1-D array; Python strings are kept exactly, in an object array."""
    arr = np.asarray(keys)
    if arr.dtype.kind in "US" and not isinstance(keys, np.ndarray):
        arr = np.array(keys, dtype=object)  # fixed-width str would drop trailing NULs
    return arr.reshape(-1)


def hash_keys(keys: npt.ArrayLike) -> U64:
    """64-bit hashes of an array of keys: vectorised for integer dtypes, SHA-1 per element
    for str, bytes and object arrays. Agrees with :func:`hash_key` element by element.

    NOTE: numpy's fixed-width str and bytes dtypes drop trailing NUL characters
    (``np.array(["a\\x00"])`` holds ``"a"``); lists of Python strings are therefore converted
    to object arrays, and arrays of such keys should be object arrays too.
    """
    arr = _key_array(keys)
    if arr.dtype.kind == "u":
        return splitmix64(arr.astype(np.uint64, copy=False))
    if arr.dtype.kind == "i":
        return splitmix64(arr.astype(np.int64, copy=False).view(np.uint64))
    if arr.dtype.kind in "USO":
        return np.fromiter((hash_key(k) for k in arr.tolist()), np.uint64, count=arr.size)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    raise TypeError(f"keys must be integers, str or bytes, got an array of dtype {arr.dtype}")


def _node_key(node: NodeId) -> tuple[int, int, str]:
    if isinstance(node, int):
        return (0, node, "")
    if isinstance(node, str):
        return (1, 0, node)
    raise TypeError(f"a node id must be an int or a str, got {node!r}")


def _vnode_hashes(node: NodeId, vnodes: int) -> U64:
    prefix = f"{'i' if isinstance(node, int) else 's'}:{node}#"
    return np.fromiter(
        (_sha64(f"{prefix}{i}".encode()) for i in range(vnodes)), np.uint64, count=vnodes
    )


class HashRing:
    """An immutable consistent-hash ring.

    >>> ring = HashRing(["a", "b", "c"], vnodes=8)
    >>> ring.owner("some key") in ring.nodes
    True
    >>> bigger = ring.add_node("d")
    >>> moved = key_moves(ring, bigger, list(map(str, range(1000))))
    >>> set(moved.new_owners.tolist()) == {"d"}      # keys only move to the new node
    True
    """

    __slots__ = ("_bits", "_hashes", "_node_ids", "_nodes", "_owner", "_tokens", "_vnodes")

    def __init__(self, nodes: Iterable[NodeId] = (), *, vnodes: int = 20, bits: int = 64) -> None:
        if not isinstance(vnodes, int) or vnodes < 1:
            raise ValueError(f"vnodes must be an integer >= 1, got {vnodes!r}")
        if not isinstance(bits, int) or not 1 <= bits <= 64:
            raise ValueError(f"bits must be an integer in 1..64, got {bits!r}")
        self._vnodes, self._bits = vnodes, bits
        hashes: dict[NodeId, U64] = {}
        for node in nodes:
            _node_key(node)
            if node in hashes:
                raise ValueError(f"node {node!r} given twice")
            hashes[node] = _vnode_hashes(node, vnodes)
        self._build(hashes)

    def _build(self, hashes: dict[NodeId, U64]) -> None:
        self._hashes: Mapping[NodeId, U64] = MappingProxyType(hashes)
        self._nodes = tuple(sorted(hashes, key=_node_key))
        ints = all(isinstance(n, int) and -(1 << 63) <= n < (1 << 63) for n in self._nodes)
        ids = np.empty(len(self._nodes), dtype=np.int64 if ints else object)
        ids[:] = self._nodes
        self._node_ids = ids
        shift = np.uint64(64 - self._bits)
        v = self._vnodes
        tokens = np.concatenate([hashes[n] for n in self._nodes] or [np.zeros(0, np.uint64)])
        tokens = tokens >> shift
        node_idx = np.repeat(np.arange(len(self._nodes), dtype=np.int64), v)
        vnode_idx = np.tile(np.arange(v, dtype=np.int64), len(self._nodes))
        order = np.lexsort((vnode_idx, node_idx, tokens))
        self._tokens = tokens[order]
        self._owner = node_idx[order]
        self._tokens.flags.writeable = False
        self._owner.flags.writeable = False

    @classmethod
    def _derived(cls, ring: HashRing, hashes: dict[NodeId, U64]) -> HashRing:
        new = object.__new__(cls)
        new._vnodes, new._bits = ring._vnodes, ring._bits
        new._build(hashes)
        return new

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        """Physical nodes, ints ascending then strs ascending; indices used by
        :meth:`owner_indices` refer to this tuple."""
        return self._nodes

    @property
    def vnodes(self) -> int:
        """Virtual nodes per physical node."""
        return self._vnodes

    @property
    def bits(self) -> int:
        """Identifier width m: positions are in ``0 .. 2^m - 1``."""
        return self._bits

    @property
    def tokens(self) -> U64:
        """The sorted virtual-node identifiers (read-only)."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._hashes

    def __repr__(self) -> str:
        return f"HashRing(<{len(self)} nodes>, vnodes={self._vnodes}, bits={self._bits})"

    def position(self, key: Key) -> int:
        """The identifier of ``key`` on the ring."""
        return hash_key(key) >> (64 - self._bits)

    def positions(self, keys: npt.ArrayLike) -> U64:
        """Identifiers of an array of keys."""
        return hash_keys(keys) >> np.uint64(64 - self._bits)

    def _check_position(self, position: int) -> int:
        p = int(position)
        if not 0 <= p < (1 << self._bits):
            raise ValueError(f"position {p} is outside the {self._bits}-bit identifier space")
        return p

    def _successor_indices(self, positions: U64) -> npt.NDArray[np.int64]:
        if not self._nodes:
            raise EmptyRingError("cannot look up keys on a ring with no nodes")
        i = np.searchsorted(self._tokens, positions, side="left")
        i[i == self._tokens.size] = 0  # past the last identifier: wrap to the first
        return np.asarray(self._owner[i], dtype=np.int64)

    def successor(self, position: int) -> NodeId:
        """The node of the first virtual node at or clockwise after identifier ``position``."""
        p = np.array([self._check_position(position)], dtype=np.uint64)
        return self._nodes[int(self._successor_indices(p)[0])]

    def successors(self, positions: npt.ArrayLike) -> NodeArray:
        """:meth:`successor` of each identifier in an array."""
        arr = np.asarray(positions).reshape(-1)
        if arr.size and (
            arr.dtype.kind not in "iu" or int(arr.min()) < 0 or int(arr.max()) >> self._bits
        ):
            raise ValueError(f"positions must be integers in the {self._bits}-bit identifier space")
        return self._node_ids[self._successor_indices(arr.astype(np.uint64))]

    def owner(self, key: Key) -> NodeId:
        """The node owning ``key``: the successor of the key's position."""
        if not self._nodes:
            raise EmptyRingError("cannot look up a key on a ring with no nodes")
        return self.successor(self.position(key))

    def owner_indices(self, keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """For each key, the index in :attr:`nodes` of its owner (vectorised)."""
        if not self._nodes:
            raise EmptyRingError("cannot look up keys on a ring with no nodes")
        return self._successor_indices(self.positions(keys))

    def owners(self, keys: npt.ArrayLike) -> NodeArray:
        """For each key, its owner's node id (int64 array if all node ids are ints)."""
        return self._node_ids[self.owner_indices(keys)]

    def arcs(self, node: NodeId) -> list[tuple[int, int]]:
        """The arcs ``(start, end]`` of identifiers owned by ``node``, clockwise.

        An arc with ``start > end`` wraps past zero; ``start == end`` is the whole circle.
        """
        if node not in self._hashes:
            raise ValueError(f"node {node!r} is not on the ring")
        j = self._nodes.index(node)
        out = []
        for k in np.flatnonzero(self._owner == j).tolist():
            start, end = int(self._tokens[k - 1]), int(self._tokens[k])  # k-1 wraps at 0
            # start == end: for k > 0 an earlier duplicate identifier owns it (empty arc);
            # for k == 0 every identifier is equal and this vnode owns the whole circle.
            if start != end or k == 0:
                out.append((start, end))
        return out

    def add_node(self, node: NodeId) -> HashRing:
        """A ring with ``node`` added."""
        _node_key(node)
        if node in self._hashes:
            raise ValueError(f"node {node!r} is already on the ring")
        hashes = dict(self._hashes)
        hashes[node] = _vnode_hashes(node, self._vnodes)
        return HashRing._derived(self, hashes)

    def remove_node(self, node: NodeId) -> HashRing:
        """A ring without ``node``."""
        if node not in self._hashes:
            raise ValueError(f"node {node!r} is not on the ring")
        hashes = dict(self._hashes)
        del hashes[node]
        return HashRing._derived(self, hashes)


@dataclass(frozen=True, eq=False)
class KeyMoves:
    """Keys whose owner differs between two rings, with old and new owners."""

    keys: npt.NDArray[np.generic]
    old_owners: npt.NDArray[np.generic]
    new_owners: npt.NDArray[np.generic]
    total: int
    """How many keys were compared."""

    @property
    def fraction(self) -> float:
        """Moved keys / compared keys (0.0 for no keys)."""
        return len(self.keys) / self.total if self.total else 0.0


def key_moves(before: HashRing, after: HashRing, keys: npt.ArrayLike) -> KeyMoves:
    """The keys that change owner from ring ``before`` to ring ``after``."""
    if before.bits != after.bits:
        raise ValueError(f"rings use different identifier widths: {before.bits} and {after.bits}")
    arr = _key_array(keys)
    old, new = before.owners(arr), after.owners(arr)
    moved = old != new
    return KeyMoves(arr[moved], old[moved], new[moved], int(arr.size))


@dataclass(frozen=True, slots=True)
class LoadStats:
    """Keys per physical node over a set of keys (percentiles interpolate linearly)."""

    nodes: int
    keys: int
    mean: float
    p1: float
    p50: float
    p99: float
    max: int
    max_over_mean: float


def keys_per_node(ring: HashRing, keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """How many of ``keys`` each node of ``ring.nodes`` owns (zeros included)."""
    counts = np.bincount(ring.owner_indices(keys), minlength=len(ring))
    return np.asarray(counts, dtype=np.int64)


def load_stats(ring: HashRing, keys: npt.ArrayLike) -> LoadStats:
    """Summary of :func:`keys_per_node`: mean, p1/p50/p99, max and max/mean."""
    counts = keys_per_node(ring, keys)
    total = int(counts.sum())
    mean = total / counts.size
    p1, p50, p99 = (float(x) for x in np.percentile(counts, [1, 50, 99]))
    top = int(counts.max())
    return LoadStats(
        nodes=int(counts.size),
        keys=total,
        mean=mean,
        p1=p1,
        p50=p50,
        p99=p99,
        max=top,
        max_over_mean=top / mean if mean else 0.0,
    )
