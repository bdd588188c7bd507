"""Consistent-hash ring: stable hashing, successor lookup, key movement, load, bad input."""

from __future__ import annotations

import doctest
import hashlib
import random
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raysim.values.ring
from raysim.values.ring import (
    EmptyRingError,
    HashRing,
    NodeId,
    hash_key,
    hash_keys,
    key_moves,
    keys_per_node,
    load_stats,
    splitmix64,
)

FAST = settings(max_examples=40, deadline=None)
node_ids = st.one_of(st.integers(-50, 50), st.text("abcdef", min_size=1, max_size=3))
node_sets = st.lists(node_ids, min_size=1, max_size=8, unique=True)


def test_module_doctests_pass() -> None:
    result = doctest.testmod(raysim.values.ring)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- hashing


def test_hashes_are_pinned_across_machines_and_runs() -> None:
    assert int(splitmix64(0)) == 0xE220A8397B1DCDAF  # SplitMix64 reference, state 0
    assert hash_key("abc") == int(hashlib.sha1(b"abc").hexdigest()[:16], 16)
    assert hash_key(b"abc") == hash_key("abc")
    assert hash_key(-1) == hash_key(2**64 - 1)
    label = hashlib.sha1(b"s:a#0").digest()[:8]
    assert HashRing(["a"], vnodes=1).tokens.tolist() == [int.from_bytes(label, "big")]
    ring = HashRing(range(8), vnodes=4)
    assert ring.tokens[:3].tolist() == [69932726283287475, 1710416369831334189, 2278358964115734768]
    assert ring.owner(12345) == 3 and HashRing(["a", "b", "c"], vnodes=4).owner("hello") == "a"


@FAST
@given(st.lists(st.integers(-(2**63), 2**64 - 1), max_size=20))
def test_vectorised_int_hash_agrees_with_scalar(keys: list[int]) -> None:
    as_u64 = np.array([k & (2**64 - 1) for k in keys], dtype=np.uint64)
    expected = [hash_key(k) for k in keys]
    assert hash_keys(as_u64).tolist() == expected
    assert hash_keys(np.array(keys, dtype=object)).tolist() == expected
    small = [k for k in keys if -(2**63) <= k < 2**63]
    assert hash_keys(np.array(small, dtype=np.int64)).tolist() == [hash_key(k) for k in small]


@FAST
@given(st.lists(st.text(max_size=6), max_size=10))
def test_vectorised_str_hash_agrees_with_scalar(keys: list[str]) -> None:
    expected = [hash_key(k) for k in keys]
    assert hash_keys(np.array(keys, dtype=object)).tolist() == expected
    assert hash_keys(keys).tolist() == expected  # a list keeps its strings exactly
    # Fixed-width numpy str arrays drop trailing NULs ("a\x00" is stored as "a"), so they
    # agree with the keys numpy actually holds.
    fixed = np.array(keys, dtype=str)
    assert hash_keys(fixed).tolist() == [hash_key(k) for k in fixed.tolist()]
    assert [hash_key(k) for k in keys if not k.endswith("\x00")] == [
        h for k, h in zip(keys, hash_keys(fixed).tolist(), strict=True) if not k.endswith("\x00")
    ]


@pytest.mark.parametrize(
    ("key", "error", "match"),
    [(1.5, TypeError, "int, str or bytes"), (2**64, ValueError, "fit in 64 bits")],
)
def test_bad_keys(key: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        hash_key(key)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        HashRing([1]).owner(key)  # type: ignore[arg-type]


def test_bad_key_arrays() -> None:
    with pytest.raises(TypeError, match="dtype float64"):
        HashRing([1]).owners(np.array([1.0, 2.0]))
    assert HashRing([1]).owners([]).size == 0


# --------------------------------------------------------------------------- lookup


@FAST
@given(node_sets, st.integers(1, 4), st.lists(st.integers(0, 255), max_size=20))
def test_owner_is_the_first_vnode_clockwise(
    nodes: list[NodeId], vnodes: int, positions: list[int]
) -> None:
    ring = HashRing(nodes, vnodes=vnodes, bits=8)  # 8 bits: collisions and wrap-around
    tokens = ring.tokens.tolist()
    for p in positions:
        first = next((t for t in tokens if t >= p), tokens[0])  # wrap past zero
        at_first = [
            n
            for n in ring.nodes  # ring.nodes is in tie-break order
            if first in (int(h) >> 56 for h in raysim.values.ring._vnode_hashes(n, vnodes))
        ]
        assert ring.successor(p) == at_first[0]
    assert ring.successors(np.array(positions, dtype=np.int64)).tolist() == [
        ring.successor(p) for p in positions
    ]


@FAST
@given(node_sets, st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text()), max_size=20))
def test_scalar_and_vectorised_owners_agree(nodes: list[NodeId], keys: list[int | str]) -> None:
    ring = HashRing(nodes, vnodes=3)
    vectorised = ring.owners(np.array(keys, dtype=object)).tolist()
    assert vectorised == [ring.owner(k) for k in keys]
    assert [ring.nodes[i] for i in ring.owner_indices(np.array(keys, dtype=object))] == vectorised
    ints = [k for k in keys if isinstance(k, int)]
    assert ring.owners(np.array(ints, dtype=np.int64)).tolist() == [ring.owner(k) for k in ints]


@FAST
@given(node_sets, st.randoms(use_true_random=False))
def test_ring_does_not_depend_on_insertion_order(nodes: list[NodeId], rnd: random.Random) -> None:
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    a = HashRing(nodes, vnodes=3, bits=16)
    b = HashRing(shuffled[:1], vnodes=3, bits=16)
    for n in shuffled[1:]:
        b = b.add_node(n)
    assert a.nodes == b.nodes
    assert np.array_equal(a.tokens, b.tokens)
    assert a.successors(np.arange(2**16)).tolist() == b.successors(np.arange(2**16)).tolist()


def test_every_position_is_owned_by_exactly_the_node_whose_arc_contains_it() -> None:
    ring = HashRing(["a", "b", "c", 7, 9], vnodes=6, bits=8)
    positions = np.arange(256)
    owners = ring.successors(positions).tolist()
    for p in positions.tolist():
        holders = [n for n in ring.nodes if any(_in_arc(p, s, e) for s, e in ring.arcs(n))]
        assert holders == [owners[p]]


def _in_arc(x: int, start: int, end: int) -> bool:
    if start < end:
        return start < x <= end
    if start > end:
        return x > start or x <= end
    return True  # start == end: the whole circle


def test_single_vnode_owns_the_whole_circle() -> None:
    ring = HashRing(["solo"], vnodes=1, bits=8)
    ((start, end),) = ring.arcs("solo")
    assert start == end
    assert set(ring.successors(np.arange(256)).tolist()) == {"solo"}


# --------------------------------------------------------------------------- key movement


@FAST
@given(node_sets, node_ids, st.integers(1, 5))
def test_join_moves_only_the_new_nodes_range_to_it(
    nodes: list[NodeId], newcomer: NodeId, vnodes: int
) -> None:
    if newcomer in nodes:
        return
    before = HashRing(nodes, vnodes=vnodes, bits=12)
    after = before.add_node(newcomer)
    keys = np.arange(3000)
    moves = key_moves(before, after, keys)
    assert set(moves.new_owners.tolist()) <= {newcomer}
    # Algorithm 8: exactly the keys in the newcomer's arcs move (from their old successor).
    positions = after.positions(keys).tolist()
    in_range = [
        k for k, p in zip(keys.tolist(), positions, strict=True)
        if any(_in_arc(p, s, e) for s, e in after.arcs(newcomer))
    ]  # fmt: skip
    assert moves.keys.tolist() == in_range
    assert moves.old_owners.tolist() == before.owners(moves.keys).tolist()
    # Leaving again restores every assignment.
    back = key_moves(after, after.remove_node(newcomer), keys)
    assert set(back.old_owners.tolist()) <= {newcomer}
    assert back.keys.tolist() == moves.keys.tolist()
    assert back.new_owners.tolist() == moves.old_owners.tolist()


def test_join_moves_about_one_over_n_of_the_keys() -> None:
    ring = HashRing(range(100), vnodes=20)
    moves = key_moves(ring, ring.add_node(100), np.arange(100_000))
    assert 0.003 < moves.fraction < 0.03  # ~1/101; naive mod-N hashing would move ~99 %
    assert moves.total == 100_000


# --------------------------------------------------------------------------- load


def test_load_stats() -> None:
    keys = np.arange(20_000)
    single = load_stats(HashRing(["x"]), keys)
    assert (single.nodes, single.keys, single.max) == (1, 20_000, 20_000)
    assert single.p1 == single.p50 == single.p99 == 20_000.0 and single.max_over_mean == 1.0
    ring = HashRing(range(50), vnodes=10)
    counts = keys_per_node(ring, keys)
    assert counts.sum() == 20_000 and counts.size == 50
    assert counts.tolist() == [int((ring.owners(keys) == n).sum()) for n in ring.nodes]
    stats = load_stats(ring, keys)
    assert stats.mean == 400.0 and stats.max == counts.max()
    assert stats.p1 <= stats.p50 <= stats.p99 <= stats.max
    assert stats.max_over_mean == pytest.approx(counts.max() / 400)


def test_more_virtual_nodes_balance_load_better() -> None:
    keys = np.arange(100_000)
    coarse = load_stats(HashRing(range(100), vnodes=1), keys).max_over_mean
    fine = load_stats(HashRing(range(100), vnodes=64), keys).max_over_mean
    assert fine < 1.5 < coarse


# --------------------------------------------------------------------------- errors


def test_empty_ring_lookups_raise_a_clear_error() -> None:
    empty = HashRing()
    assert isinstance(EmptyRingError(), LookupError)
    with pytest.raises(EmptyRingError, match="ring with no nodes"):
        empty.owner("k")
    with pytest.raises(EmptyRingError, match="ring with no nodes"):
        empty.owners(np.arange(3))
    with pytest.raises(EmptyRingError, match="ring with no nodes"):
        load_stats(empty, np.arange(3))
    with pytest.raises(EmptyRingError, match="ring with no nodes"):
        HashRing(["a"]).remove_node("a").successor(0)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: HashRing([1], vnodes=0), ValueError, "vnodes must be an integer >= 1"),
        (lambda: HashRing([1], bits=65), ValueError, r"bits must be an integer in 1\.\.64"),
        (lambda: HashRing([1, 1]), ValueError, "node 1 given twice"),
        (lambda: HashRing([1.5]), TypeError, "node id must be an int or a str"),
        (lambda: HashRing([1]).add_node(1), ValueError, "already on the ring"),
        (lambda: HashRing([1]).remove_node(2), ValueError, "node 2 is not on the ring"),
        (lambda: HashRing([1]).arcs(2), ValueError, "node 2 is not on the ring"),
        (lambda: HashRing([1], bits=8).successor(256), ValueError, "8-bit identifier space"),
        (lambda: HashRing([1], bits=8).successors([-1]), ValueError, "8-bit identifier space"),
        (
            lambda: key_moves(HashRing([1], bits=8), HashRing([1]), [1]),
            ValueError,
            "different identifier widths: 8 and 64",
        ),
    ],
)
def test_bad_ring_input(make: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()  # type: ignore[operator]


def test_ring_is_immutable() -> None:
    ring = HashRing([1, 2])
    ring.add_node(3)
    ring.remove_node(1)
    assert ring.nodes == (1, 2) and 3 not in ring and 1 in ring and len(ring) == 2
    with pytest.raises(ValueError, match="read-only"):
        ring.tokens[0] = 0


# --------------------------------------------------------------------------- docs


def test_readme_toolkit_examples_run() -> None:
    """Every ```python block of the README's toolkit section runs, and its asserts hold."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The causality and replicated-data toolkit", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 5
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_bench_functions_return_result_rows() -> None:
    """Smoke test on tiny sizes (no timing assertions: timing lives in `raysim bench`)."""
    from raysim.bench_toolkit import bench_ring, bench_vector_clock_merge

    ring = bench_ring(nodes=20, vnodes=3, keys=2_000)
    assert ring["workload"] == "ring_place" and (ring["nodes"], ring["keys"]) == (20, 2_000)
    assert ring["build_seconds"] >= 0 and ring["lookup_seconds"] >= 0
    assert ring["max_over_mean"] >= 1.0
    clocks = bench_vector_clock_merge(entries=1_000)
    assert clocks["workload"] == "vector_clock_merge" and clocks["entries"] == 1_000
    assert clocks["dense_seconds_per_merge"] >= 0 and clocks["sparse_seconds_per_merge"] >= 0
