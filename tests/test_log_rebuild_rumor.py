"""Log rebuild (flush policy, hello/fetch, prefix check) and rumor mongering (fake network)."""

from __future__ import annotations

import math

import pytest

from raysim.protocols.gossip import rumor as rm
from raysim.protocols.replication import log_rebuild as lr
from raysim.protocols.replication.checks import columns
from tests.replication_fake import FakeNet


def _crash_cycle(flush: int, rounds: int = 100) -> dict[str, float]:
    p = lr.LogParams(interval=50, flush=flush, hello_wait=200, rto=300)
    net = FakeNet([lr.LogRebuild(p, i) for i in range(4)], loss=0.05, seed=1)
    net.start()
    t = 0
    for j in range(rounds):  # one crash-recovery per round, replicas 1..3 in turn
        victim = 1 + j % 3
        t += 700
        net.run(t)
        net.crash(victim)
        t += 300
        net.run(t)
        net.recover(victim, lr.LogRebuild(p, victim))
    net.run(t + 3000)
    return lr.rebuild_metrics(net.events()) | {"violations": len(
        lr.LogRebuild.safety(p, net.events()))}


def test_synced_log_loses_nothing_across_100_crash_recoveries() -> None:
    m = _crash_cycle(flush=1)
    assert m["recoveries"] == 100 and m["entries_lost"] == 0
    assert m["prefix_agreement"] == 1.0 and m["violations"] == 0 and m["entries_fetched"] > 0


def test_flushing_every_8_loses_the_unflushed_tail_and_fetches_it_back() -> None:
    m = _crash_cycle(flush=8, rounds=30)
    assert 0 < m["entries_lost"] <= 30 * 7 and m["prefix_agreement"] == 1.0


def test_prefix_check_on_hand_made_columns() -> None:
    ev = columns(time=[1, 1, 2, 2], kind=["obs"] * 4, node=[1, 2, 1, 2],
                 name=["append"] * 4, msg_id=[1, 1, 2, 2], value=[10.0, 10.0, 11.0, 12.0])
    found = lr.LogRebuild.safety(lr.LogParams(), ev)
    assert [(v.check, v.nodes[0]) for v in found] == [("prefix_agreement", 2)]


def test_illegal_phase_transition_is_named() -> None:
    with pytest.raises(ValueError, match="illegal event 'entries' in phase active"):
        lr.step(lr.ACTIVE, "entries")


def _rumor(**kw: object) -> dict[str, float]:
    p = rm.RumorParams(rumors=5, **kw)  # type: ignore[arg-type]
    net = FakeNet([rm.Rumor(p, i) for i in range(200)], low=1, high=100, seed=3)
    net.start()
    net.run(40_000)
    return rm.rumor_metrics(p, net.events(), 200)


def test_push_feedback_counter_residue_near_the_fixed_point() -> None:
    m = _rumor(mode="push", feedback=True, interest="counter", k=1)
    assert abs(m["residue"] - rm.residue_fixed_point(1)) < 0.08 and m["traffic"] > 1.0
    assert 0 < m["t_ave"] < m["t_last"]


def test_anti_entropy_backstop_drives_residue_to_zero() -> None:
    m = _rumor(mode="push", feedback=True, interest="counter", k=1, anti_entropy=2)
    assert m["residue"] == 0.0 and m["residue_rumor_only"] > 0.0


def test_fixed_point_solves_its_equation() -> None:
    for k in (1, 2, 5):
        s = rm.residue_fixed_point(k)
        assert 0 < s < 1 and math.isclose(s, math.exp(-(k + 1) * (1 - s)), rel_tol=1e-9)
