"""Lamport clocks, vector clocks (dense and sparse) and happens-before classification."""

from __future__ import annotations

import doctest
import itertools
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raysim.values.clocks
import raysim.values.history
from raysim.values.clocks import (
    DenseVectorClock,
    LamportClock,
    Order,
    SparseVectorClock,
    VectorClock,
    compare,
)
from raysim.values.history import Event, classify_history

VC = TypeVar("VC", bound=VectorClock)
FAST = settings(max_examples=80, deadline=None)


def test_module_doctests_pass() -> None:
    for module in (raysim.values.clocks, raysim.values.history):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0


# --------------------------------------------------------------------------- Lamport


def test_lamport_tick_send_receive() -> None:
    p = LamportClock(pid=0)
    p = p.tick()
    p, ts = p.send()
    assert (p.time, ts) == (2, 2)
    q = LamportClock(pid=1, time=7).receive(ts)
    assert q.time == 8  # local clock ahead: max(7, 2) + 1
    r = LamportClock(pid=2).receive(ts)
    assert r.time == 3  # received ahead: max(0, 2) + 1


def test_lamport_total_order_breaks_ties_by_pid() -> None:
    a, b, c = LamportClock(pid=2, time=3), LamportClock(pid=1, time=3), LamportClock(pid=0, time=4)
    assert sorted([a, c, b]) == [b, a, c]
    assert b.key == (3, 1) and b < a < c


def test_lamport_is_immutable() -> None:
    p = LamportClock(pid=0)
    p.tick()
    assert p.time == 0
    with pytest.raises(AttributeError):
        p.time = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"pid": -1}, ValueError), ({"pid": 0, "time": -3}, ValueError), ({"pid": 1.5}, TypeError)],
)
def test_lamport_rejects_bad_fields(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match="LamportClock"):
        LamportClock(**kwargs)  # type: ignore[arg-type]


def test_lamport_rejects_negative_received_timestamp() -> None:
    with pytest.raises(ValueError, match="received timestamp"):
        LamportClock(pid=0).receive(-1)


# --------------------------------------------------------------------------- vector clocks


def test_vector_clock_send_receive_and_compare() -> None:
    p0, p1 = DenseVectorClock.zeros(3), DenseVectorClock.zeros(3)
    p0, stamp = p0.send(0)
    p1 = p1.tick(1)
    assert compare(p0, p1) is Order.CONCURRENT
    p1 = p1.receive(1, stamp)
    assert p1 == DenseVectorClock([1, 2, 0])
    assert compare(p0, p1) is Order.BEFORE and compare(p1, p0) is Order.AFTER
    assert p0.happened_before(p1) and not p1.happened_before(p0)
    assert compare(p1, DenseVectorClock([1, 2, 0])) is Order.EQUAL


def test_dense_size_mismatch_names_both_sizes() -> None:
    a, b = DenseVectorClock.zeros(3), DenseVectorClock.zeros(5)
    for op in (a.merge, a.compare, lambda o: a.receive(0, o)):
        with pytest.raises(ValueError, match=r"different sizes: 3 and 5"):
            op(b)


def test_mixing_dense_and_sparse_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="DenseVectorClock with SparseVectorClock"):
        DenseVectorClock.zeros(2).merge(SparseVectorClock())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SparseVectorClock with DenseVectorClock"):
        compare(SparseVectorClock(), DenseVectorClock.zeros(2))


@pytest.mark.parametrize(
    ("counts", "error", "match"),
    [
        ([1, -1], ValueError, ">= 0"),
        ([[1, 2]], ValueError, "1-D"),
        ([], ValueError, "non-empty"),
        ([1.5, 2.0], TypeError, "integers"),
        (np.array([2**64 - 1], dtype=np.uint64), ValueError, "int64"),
    ],
)
def test_dense_rejects_bad_counts(counts: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        DenseVectorClock(counts)  # type: ignore[arg-type]


def test_pid_out_of_range_is_rejected_not_wrapped() -> None:
    with pytest.raises(ValueError, match=r"pid 3 out of range .* size 3"):
        DenseVectorClock.zeros(3).tick(3)
    with pytest.raises(ValueError, match="pid must be >= 0"):
        DenseVectorClock.zeros(3).tick(-1)  # numpy would silently wrap to the last entry
    with pytest.raises(ValueError, match="pid must be >= 0"):
        SparseVectorClock().tick(-1)


def test_sparse_rejects_bad_entries_and_drops_zeros() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        SparseVectorClock({1: -2})
    with pytest.raises(ValueError, match="given twice"):
        SparseVectorClock([(1, 1), (1, 2)])
    assert SparseVectorClock({4: 0, 2: 1}).nonzero == 1
    assert SparseVectorClock({4: 0}) == SparseVectorClock()


def test_sparse_to_dense_sizes() -> None:
    s = SparseVectorClock({5: 2})
    assert s.to_dense() == DenseVectorClock([0, 0, 0, 0, 0, 2])
    assert s.to_dense(8).n == 8
    with pytest.raises(ValueError, match=r"pid 5 does not fit .* size 4"):
        s.to_dense(4)
    assert SparseVectorClock().to_dense() == DenseVectorClock([0])


def test_dense_clock_is_immutable() -> None:
    a = DenseVectorClock([1, 2])
    with pytest.raises(ValueError, match="read-only"):
        a.counts[0] = 9
    source = np.array([1, 2])
    b = DenseVectorClock(source)
    source[0] = 9
    assert b[0] == 1
    a.tick(0)
    assert a[0] == 1


@st.composite
def clock_pairs(draw: st.DrawFn, k: int = 2) -> tuple[list[int], ...]:
    n = draw(st.integers(1, 6))
    counts = st.lists(st.integers(0, 4), min_size=n, max_size=n)
    return tuple(draw(counts) for _ in range(k))


@FAST
@given(clock_pairs(3), st.integers(0, 5))
def test_dense_and_sparse_agree(vs: tuple[list[int], ...], pid: int) -> None:
    n = len(vs[0])
    pid %= n
    dense = [DenseVectorClock(v) for v in vs]
    sparse = [SparseVectorClock(enumerate(v)) for v in vs]
    for d, s in zip(dense, sparse, strict=True):
        assert d.to_sparse() == s and s.to_dense(n) == d
        assert d.as_dict() == s.as_dict()
        assert d.tick(pid).to_sparse() == s.tick(pid)
        assert [d[i] for i in range(n)] == [s[i] for i in range(n)]
    for (d1, s1), (d2, s2) in itertools.product(zip(dense, sparse, strict=True), repeat=2):
        assert d1.compare(d2) is s1.compare(s2)
        assert d1.merge(d2).to_sparse() == s1.merge(s2)
        assert d1.receive(pid, d2).to_sparse() == s1.receive(pid, s2)
        assert (d1 == d2) == (s1 == s2)


@FAST
@given(clock_pairs(3))
def test_merge_is_a_join(vs: tuple[list[int], ...]) -> None:
    _check_join(*(DenseVectorClock(v) for v in vs))
    _check_join(*(SparseVectorClock(enumerate(v)) for v in vs))


def _check_join(a: VC, b: VC, c: VC) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert compare(a, a.merge(b)) in (Order.BEFORE, Order.EQUAL)


@FAST
@given(clock_pairs(2), st.integers(0, 5))
def test_compare_is_antisymmetric_and_tick_advances(vs: tuple[list[int], ...], pid: int) -> None:
    a, b = (DenseVectorClock(v) for v in vs)
    assert compare(b, a) is compare(a, b).reversed()
    assert (compare(a, b) is Order.EQUAL) == (a == b)
    pid %= a.n
    assert compare(a, a.tick(pid)) is Order.BEFORE


@FAST
@given(clock_pairs(2))
def test_equal_clocks_hash_equal(vs: tuple[list[int], ...]) -> None:
    a, b = vs
    assert hash(DenseVectorClock(a)) == hash(DenseVectorClock(list(a)))
    assert hash(SparseVectorClock(enumerate(a))) == hash(SparseVectorClock(enumerate(list(a))))
    assert len({DenseVectorClock(a), DenseVectorClock(b)}) == (1 if a == b else 2)


# --------------------------------------------------------------------------- histories

COURSE_EXAMPLE = [
    ["a", "b!m1", "c?m3"],
    ["d?m1", "e!m2", "f"],
    ["g", "h?m2", "i!m3"],
]


def test_three_process_example() -> None:
    h = classify_history(COURSE_EXAMPLE)
    expected_vectors = {
        "a": [1, 0, 0], "b": [2, 0, 0], "c": [3, 2, 3],
        "d": [2, 1, 0], "e": [2, 2, 0], "f": [2, 3, 0],
        "g": [0, 0, 1], "h": [2, 2, 2], "i": [2, 2, 3],
    }  # fmt: skip
    assert {e: v.counts.tolist() for e, v in h.vector.items()} == expected_vectors
    assert dict(h.lamport) == {
        "a": 1, "b": 2, "c": 7, "d": 3, "e": 4, "f": 5, "g": 1, "h": 5, "i": 6,
    }  # fmt: skip
    concurrent = {frozenset((a, b)) for a, b, o in h.pairs() if o is Order.CONCURRENT}
    assert concurrent == {frozenset(p) for p in ["ag", "bg", "dg", "eg", "fg", "fh", "fi", "cf"]}
    assert len(h.pairs()) == 36
    assert h.happened_before("a", "c") and h.happened_before("g", "c")
    assert h.order("c", "a") is Order.AFTER
    lines = h.describe().splitlines()
    assert "a → b" in lines and "a ∥ g" in lines and "c ∥ f" in lines and len(lines) == 36


def test_history_accepts_event_objects() -> None:
    h = classify_history([[Event("x", "send", 1)], [Event("y"), Event("z", "receive", 1)]])
    assert h.happened_before("x", "z") and h.concurrent("x", "y")
    assert h.process == {"x": 0, "y": 1, "z": 1}


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ([], "at least one process"),
        ([["a", "a"]], "used twice"),
        ([["a!m", "b!m"]], "sent twice"),
        ([["a?m"]], "never sent"),
        ([["a?m1", "b!m2"], ["c?m2", "d!m1"]], r"cannot happen: receives \['a', 'c'\]"),
        ([["a!m?x"]], "one '!' or '?'"),
        ([["a!"]], "expected 'name!message'"),
        ([["?m"]], "non-empty string"),
    ],
)
def test_history_errors(history: list[list[str]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classify_history(history)


def test_event_validates_kind_and_message() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        Event("a", "sned", "m")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a message"):
        Event("a", "send")
    with pytest.raises(ValueError, match="takes no message"):
        Event("a", "local", "m")


@st.composite
def histories(draw: st.DrawFn) -> list[list[str]]:
    """A history produced by a random execution (so it can always happen)."""
    n = draw(st.integers(1, 4))
    procs: list[list[str]] = [[] for _ in range(n)]
    in_flight: list[list[str]] = [[] for _ in range(n)]
    for step in range(draw(st.integers(0, 24))):
        p = draw(st.integers(0, n - 1))
        action = draw(st.sampled_from(["local", "send", "receive"]))
        if action == "receive" and in_flight[p]:
            msg = in_flight[p].pop(draw(st.integers(0, len(in_flight[p]) - 1)))
            procs[p].append(f"e{step}?{msg}")
        elif action == "send":
            in_flight[draw(st.integers(0, n - 1))].append(f"m{step}")
            procs[p].append(f"e{step}!m{step}")
        else:
            procs[p].append(f"e{step}")
    return procs


def _happens_before(history: list[list[str]]) -> set[tuple[str, str]]:
    """Transitive closure of program order and send → receive, independent of clocks."""
    events = [Event.parse(e) for proc in history for e in proc]
    succ: dict[str, set[str]] = {e.name: set() for e in events}
    for proc in history:
        names = [Event.parse(e).name for e in proc]
        for a, b in itertools.pairwise(names):
            succ[a].add(b)
    sender = {e.message: e.name for e in events if e.kind == "send"}
    for e in events:
        if e.kind == "receive":
            succ[sender[e.message]].add(e.name)
    closure: set[tuple[str, str]] = set()
    for start in succ:
        stack, seen = list(succ[start]), set()
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack.extend(succ[x])
        closure |= {(start, x) for x in seen}
    return closure


@FAST
@given(histories())
def test_vector_clocks_characterise_happens_before(history: list[list[str]]) -> None:
    hb = _happens_before(history)
    h = classify_history(history)
    for a, b, order in h.pairs():
        expected = (
            Order.BEFORE if (a, b) in hb else Order.AFTER if (b, a) in hb else Order.CONCURRENT
        )
        assert order is expected, (a, b)
        # Lamport's clock condition: a → b implies L(a) < L(b).
        if order is Order.BEFORE:
            assert h.lamport[a] < h.lamport[b]
        if order is Order.AFTER:
            assert h.lamport[b] < h.lamport[a]
