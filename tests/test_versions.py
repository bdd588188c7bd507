"""Version vectors and the Algorithm 3 operation broadcast/receive rule."""

from __future__ import annotations

import doctest
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raysim.values.versions
from raysim.values.clocks import Order
from raysim.values.versions import (
    Operation,
    ReplicaId,
    VersionVector,
    broadcast,
    is_causally_ready,
    is_delivered,
    receive,
    replica_key,
)

FAST = settings(max_examples=80, deadline=None)
REPLICAS: list[ReplicaId] = ["A", "B", "C", 0, 1]

vectors = st.dictionaries(st.sampled_from(REPLICAS), st.integers(0, 4), max_size=5).map(
    VersionVector
)


def test_module_doctests_pass() -> None:
    result = doctest.testmod(raysim.values.versions)
    assert result.attempted > 0 and result.failed == 0


def test_increment_merge_and_dominance() -> None:
    v = VersionVector().increment("A").increment("A").increment(3)
    assert v["A"] == 2 and v[3] == 1 and v["Z"] == 0
    assert v.as_dict() == {3: 1, "A": 2}  # ints sort before strings
    w = VersionVector({"A": 1, "B": 5})
    m = v.merge(w)
    assert m == VersionVector({"A": 2, "B": 5}).increment(3)
    assert m.dominates(v) and m.dominates(w) and m.dominates(m)
    assert not v.dominates(w) and not w.dominates(v)
    assert v.concurrent_with(w) and not m.concurrent_with(v)
    assert m.total() == 8


def test_concurrent_updates_are_detected() -> None:
    base = VersionVector({"A": 1, "B": 1})
    a, b = base.increment("A"), base.increment("B")
    assert a.compare(b) is Order.CONCURRENT
    resolved = a.merge(b).increment("A")
    assert resolved.compare(a) is Order.AFTER and resolved.compare(b) is Order.AFTER
    assert base.compare(a) is Order.BEFORE and a.compare(a) is Order.EQUAL


@pytest.mark.parametrize(
    ("entries", "error", "match"),
    [
        ({"A": -1}, ValueError, ">= 0"),
        ({"A": 1.5}, TypeError, "integer"),
        ({1.5: 1}, TypeError, "int or a str"),
        ([("A", 1), ("A", 2)], ValueError, "given twice"),
    ],
)
def test_bad_vectors_are_rejected(entries: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        VersionVector(entries)  # type: ignore[arg-type]


def test_merge_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected a VersionVector, got dict"):
        VersionVector().merge({"A": 1})  # type: ignore[arg-type]


def test_replica_key_orders_ints_before_strings() -> None:
    ids: list[ReplicaId] = ["b", 10, "a", 2]
    assert sorted(ids, key=replica_key) == [2, 10, "a", "b"]
    with pytest.raises(TypeError, match="int or a str"):
        replica_key(None)  # type: ignore[arg-type]


def test_operation_validation() -> None:
    with pytest.raises(ValueError, match="needs vv"):
        Operation[str]("A", VersionVector({"B": 1}), "x")
    with pytest.raises(TypeError, match="must be a VersionVector"):
        Operation("A", {"A": 1}, "x")  # type: ignore[arg-type]


@FAST
@given(vectors, vectors, vectors)
def test_merge_is_commutative_associative_idempotent(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).dominates(a) and a.merge(b).dominates(b)


@FAST
@given(vectors, vectors, st.sampled_from(REPLICAS))
def test_dominance_agrees_with_merge_and_compare(
    a: VersionVector, b: VersionVector, r: str | int
) -> None:
    assert a.dominates(b) == (a.merge(b) == a)
    assert b.compare(a) is a.compare(b).reversed()
    assert a.concurrent_with(b) == (not a.dominates(b) and not b.dominates(a))
    assert a.increment(r).compare(a) is Order.AFTER  # increment is inflationary
    assert (hash(a) == hash(b)) or a != b


def test_broadcast_and_receive_follow_algorithm_3() -> None:
    vv_a, op = broadcast(VersionVector({"B": 4}), "A", "set x=1")
    assert vv_a == VersionVector({"A": 1, "B": 4}) and op.vv == vv_a and op.seq == 1
    vv_c = receive(VersionVector({"A": 0, "C": 2}), op)
    assert vv_c == VersionVector({"A": 1, "C": 2})  # only the source's entry is taken
    assert receive(vv_c, op) == vv_c and is_delivered(vv_c, op)
    ahead = VersionVector({"A": 7})
    assert receive(ahead, op) == ahead  # max: a stale operation never lowers the entry


def test_causal_readiness() -> None:
    _, op1 = broadcast(VersionVector(), "A", 1)
    _, op2 = broadcast(op1.vv, "B", 2)  # B saw op1, then broadcast op2
    empty = VersionVector()
    assert is_causally_ready(empty, op1) and not is_causally_ready(empty, op2)
    assert is_causally_ready(receive(empty, op1), op2)
    _, op1b = broadcast(op1.vv, "A", 3)  # A's second operation
    assert not is_causally_ready(empty, op1b)  # would skip A's first
    assert not is_causally_ready(receive(empty, op1), op1)  # duplicate


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 40))
def test_causal_delivery_under_reordering_and_duplication(
    seed: int, n_replicas: int, n_ops: int
) -> None:
    """Replicas broadcast operations over a network that reorders and duplicates them; with a
    hold-back queue (is_causally_ready) and deduplication (is_delivered) every replica
    applies every operation exactly once, after all the operations it depends on."""
    rng = random.Random(seed)
    vv = [VersionVector() for _ in range(n_replicas)]
    applied: list[list[Operation[int]]] = [[] for _ in range(n_replicas)]
    network: list[tuple[int, Operation[int]]] = []
    all_ops: list[Operation[int]] = []
    for k in range(n_ops):
        src = rng.randrange(n_replicas)
        vv[src], op = broadcast(vv[src], src, k)
        applied[src].append(op)
        all_ops.append(op)
        for dst in range(n_replicas):
            if dst != src:
                network.extend([(dst, op)] * rng.choice([1, 1, 2]))
        # deliver a random part of the network, holding back what is not ready
        rng.shuffle(network)
        network = _deliver(vv, applied, network, rng.random())
    while network:
        rng.shuffle(network)
        network = _deliver(vv, applied, network, 1.0)
    expected = VersionVector()
    for op in all_ops:
        expected = expected.merge(op.vv)
    for r in range(n_replicas):
        assert vv[r] == expected
        assert sorted(op.payload for op in applied[r]) == list(range(n_ops))
        for i, op in enumerate(applied[r]):  # causal order: dependencies applied earlier
            seen = VersionVector()
            for earlier in applied[r][:i]:
                seen = receive(seen, earlier)
            assert is_causally_ready(seen, op)


def _deliver(
    vv: list[VersionVector],
    applied: list[list[Operation[int]]],
    network: list[tuple[int, Operation[int]]],
    fraction: float,
) -> list[tuple[int, Operation[int]]]:
    cut = int(len(network) * fraction)
    pending, kept = network[:cut], network[cut:]
    progress = True
    while progress:
        progress = False
        held = []
        for dst, op in pending:
            if is_delivered(vv[dst], op):
                continue  # duplicate
            if is_causally_ready(vv[dst], op):
                vv[dst] = receive(vv[dst], op)
                applied[dst].append(op)
                progress = True
            else:
                held.append((dst, op))
        pending = held
    return kept + pending
