"""State-based CRDTs: semilattice laws, inflation, convergence, conflict rules, bad input.

States for the property tests come from random *executions*: replicas apply updates and
absorb each other's states in a random schedule, so every state tested is reachable.
"""

from __future__ import annotations

import dataclasses
import doctest
import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raysim.values.crdt
from raysim.values.crdt import (
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    StateCRDT,
    TwoPSet,
)
from raysim.values.versions import ReplicaId

FAST = settings(max_examples=40, deadline=None)
REPLICAS: list[ReplicaId] = ["A", "B", 0, 1]
ELEMS = ["w", "x", "y", "z"]

# An update: (state, replica, step, choice) -> new state; `choice` picks element and operation.
Update = Callable[[Any, ReplicaId, int, int], Any]


def _two_p(s: TwoPSet[str], r: ReplicaId, step: int, c: int) -> TwoPSet[str]:
    e = ELEMS[c % 4]
    return s.remove(e) if c // 4 % 2 and e in s else s.add(e)


def _lww_set(s: LWWElementSet[str], r: ReplicaId, step: int, c: int) -> LWWElementSet[str]:
    e, ts = ELEMS[c % 4], step // 3  # coarse timestamps, so add/remove ties happen
    return s.remove(e, ts) if c // 4 % 2 else s.add(e, ts)


def _lww_reg(s: LWWRegister[str], r: ReplicaId, step: int, c: int) -> LWWRegister[str]:
    # Lamport-style timestamps: unique per replica, equal across replicas now and then.
    ts = 0 if s.stamp is None else s.timestamp + 1
    return s.assign(ELEMS[c % 4], ts, r)


def _or(s: ORSet[str], r: ReplicaId, step: int, c: int) -> ORSet[str]:
    e = ELEMS[c % 4]
    return s.remove(e) if c // 4 % 2 else s.add(e, r)


def _pn(s: PNCounter, r: ReplicaId, step: int, c: int) -> PNCounter:
    return s.decrement(r, 1 + c % 3) if c // 4 % 2 else s.increment(r, 1 + c % 3)


SPECS: dict[str, tuple[Callable[[], StateCRDT], Update]] = {
    "GCounter": (GCounter, lambda s, r, step, c: s.increment(r, 1 + c % 3)),
    "PNCounter": (PNCounter, _pn),
    "GSet": (GSet, lambda s, r, step, c: s.add(ELEMS[c % 4])),
    "TwoPSet": (TwoPSet, _two_p),
    "LWWElementSet": (LWWElementSet, _lww_set),
    "LWWRegister": (LWWRegister, _lww_reg),
    "ORSet": (ORSet, _or),
    "MVRegister": (MVRegister, lambda s, r, step, c: s.assign(ELEMS[c % 4], r)),
}

schedules = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans(), st.integers(0, 99)),
    min_size=1,
    max_size=30,
)


@dataclasses.dataclass
class Execution:
    states: list[Any]  # every state any replica held
    updates: list[tuple[Any, Any]]  # (before, after) for each update
    finals: list[Any]


def run(name: str, schedule: list[tuple[int, int, bool, int]]) -> Execution:
    empty, update = SPECS[name]
    replicas = [empty() for _ in REPLICAS]
    ex = Execution([replicas[0]], [], [])
    for step, (r, other, is_update, choice) in enumerate(schedule):
        before = replicas[r]
        if is_update:
            replicas[r] = update(before, REPLICAS[r], step, choice)
            ex.updates.append((before, replicas[r]))
        else:
            replicas[r] = before.merge(replicas[other])
        ex.states.append(replicas[r])
    ex.finals = replicas
    return ex


def test_module_doctests_pass() -> None:
    result = doctest.testmod(raysim.values.crdt)
    assert result.attempted >= 8 and result.failed == 0


@pytest.mark.parametrize("name", SPECS)
@FAST
@given(schedule=schedules, picks=st.lists(st.integers(0, 10**6), min_size=3, max_size=3))
def test_merge_is_commutative_associative_idempotent(
    name: str, schedule: list[tuple[int, int, bool, int]], picks: list[int]
) -> None:
    states = run(name, schedule).states
    a, b, c = (states[i % len(states)] for i in picks)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).value == b.merge(a).value
    assert hash(a.merge(b)) == hash(b.merge(a))


@pytest.mark.parametrize("name", SPECS)
@FAST
@given(schedule=schedules)
def test_updates_are_inflationary(name: str, schedule: list[tuple[int, int, bool, int]]) -> None:
    for before, after in run(name, schedule).updates:
        assert before.merge(after) == after  # before ≤ after in the semilattice


@pytest.mark.parametrize("name", SPECS)
@FAST
@given(
    schedule=schedules,
    orders=st.lists(st.lists(st.integers(0, 10**6), max_size=60), min_size=2, max_size=4),
)
def test_replicas_receiving_same_states_in_any_order_with_duplicates_converge(
    name: str, schedule: list[tuple[int, int, bool, int]], orders: list[list[int]]
) -> None:
    ex = run(name, schedule)
    shipped = [after for _, after in ex.updates]
    expected = functools.reduce(lambda x, y: x.merge(y), shipped, SPECS[name][0]())
    for order in orders:
        # every state once (in a shuffled order), plus arbitrary duplicates
        n = len(shipped)
        perm = sorted(range(n), key=lambda i: (order[i % len(order)] if order else 0, i))
        deliveries = [shipped[i] for i in perm] + [shipped[i % n] for i in order if n]
        replica = SPECS[name][0]()
        for state in deliveries:
            replica = replica.merge(state)
        assert replica == expected
        assert replica.value == expected.value


@FAST
@given(schedule=schedules)
def test_counters_and_gset_values_count_every_update(
    schedule: list[tuple[int, int, bool, int]],
) -> None:
    for name, expected in (
        ("GCounter", sum(1 + c % 3 for _, _, u, c in schedule if u)),
        ("PNCounter", sum((-1 if c // 4 % 2 else 1) * (1 + c % 3) for _, _, u, c in schedule if u)),
        ("GSet", frozenset(ELEMS[c % 4] for _, _, u, c in schedule if u)),
    ):
        finals = run(name, schedule).finals
        merged = functools.reduce(lambda x, y: x.merge(y), finals)
        assert merged.value == expected, name


# --------------------------------------------------------------------------- conflict rules


def test_lww_register_ties_break_by_replica_id() -> None:
    a = LWWRegister[str]().assign("from A", 7, "A")
    b = LWWRegister[str]().assign("from B", 7, "B")
    assert a.merge(b).value == b.merge(a).value == "from B"
    c = LWWRegister[str]().assign("from 9", 7, 9)  # ints sort before strings
    assert c.merge(a).value == "from A"
    assert a.assign("older", 6, "Z").value == "from A"  # an older write is lost
    assert a.assign("newer", 8, "A").stamp == (8, "A")
    assert LWWRegister().value is None and LWWRegister().stamp is None


def test_lww_register_rejects_conflicting_identical_stamps() -> None:
    a = LWWRegister[str]().assign("x", 3, "A")
    with pytest.raises(ValueError, match=r"share stamp \(3, 'A'\)"):
        a.merge(LWWRegister[str]().assign("y", 3, "A"))
    assert a.merge(LWWRegister[str]().assign("x", 3, "A")) == a
    with pytest.raises(ValueError, match="unwritten"):
        LWWRegister("x")


def test_lww_element_set_tie_favours_add() -> None:
    added = LWWElementSet[str]().add("x", 5)
    removed = LWWElementSet[str]().remove("x", 5)
    assert "x" in added.merge(removed) and "x" in removed.merge(added)
    assert "x" not in added.remove("x", 6)
    assert "x" in added.remove("x", 4)
    assert LWWElementSet[str]().remove("ghost", 1).value == frozenset()


def test_or_set_add_wins_and_readd_after_remove() -> None:
    a = ORSet[str]().add("x", "A")
    removed_at_b = a.remove("x")
    readded_at_a = a.add("x", "A")
    assert "x" in removed_at_b.merge(readded_at_a)
    assert "x" not in removed_at_b.merge(a)  # only the observed tag was there
    assert "x" in removed_at_b.add("x", "B")  # unlike a 2P-Set, re-adding works
    tags = [tag for _, tag in readded_at_a.entries]
    assert sorted(tags, key=str) == [("A", 1), ("A", 2)]
    assert a.remove("absent") == a


def test_or_set_detects_reused_replica_ids() -> None:
    a, b = ORSet[str]().add("x", "A"), ORSet[str]().add("y", "A")  # two replicas both "A"
    with pytest.raises(ValueError, match=r"tag \('A', 1\) is attached to two elements"):
        a.merge(b)
    with pytest.raises(ValueError, match="unknown tags"):
        ORSet[str](frozenset(), frozenset({("A", 1)}))


def test_two_p_set_rules() -> None:
    s = TwoPSet[str]().add("x").remove("x")
    assert "x" not in s.add("x")
    with pytest.raises(ValueError, match="cannot remove 'y' from TwoPSet: it is not in the set"):
        s.remove("y")
    with pytest.raises(ValueError, match="cannot remove 'x'"):
        s.remove("x")
    with pytest.raises(ValueError, match="removed elements never added: 'q'"):
        TwoPSet[str](frozenset(), frozenset({"q"}))


def test_mv_register_keeps_concurrent_writes_until_overwritten() -> None:
    base = MVRegister[str]().assign("v0", "A")
    a, b = base.assign("va", "A"), base.assign("vb", "B")
    both = a.merge(b)
    assert both.value == {"va", "vb"}
    assert both.vv.as_dict() == {"A": 2, "B": 1}
    later = both.assign("v1", "B")
    assert later.value == {"v1"}
    assert later.merge(a).value == {"v1"} and a.merge(later) == later
    assert MVRegister[str]().value == frozenset()


def test_counters_reject_non_positive_amounts() -> None:
    with pytest.raises(ValueError, match="amount must be >= 1"):
        GCounter().increment("A", 0)
    with pytest.raises(ValueError, match="amount must be >= 0"):
        PNCounter().decrement("A", -2)
    with pytest.raises(ValueError, match=r"GCounter.counts\['A'\] must be >= 0"):
        GCounter({"A": -1})
    with pytest.raises(TypeError, match="int or a str"):
        GCounter().increment(2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (GCounter(), PNCounter()),
        (GSet(), TwoPSet()),
        (ORSet(), LWWElementSet()),
        (LWWRegister(), MVRegister()),
        (PNCounter(), GCounter()),
    ],
)
def test_merging_different_types_is_a_type_error(a: StateCRDT, b: StateCRDT) -> None:
    with pytest.raises(TypeError, match=f"cannot merge {type(a).__name__} with {type(b).__name__}"):
        a.merge(b)


def test_values_are_immutable() -> None:
    g = GCounter().increment("A")
    g.increment("A")
    assert g.value == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.counts = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        g.counts["A"] = 5  # type: ignore[index]
    source: dict[ReplicaId, int] = {"A": 1}
    g2 = GCounter(source)
    source["A"] = 9
    assert g2.value == 1
