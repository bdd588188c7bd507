"""Chord: identifiers, handlers with a fake context, and whole runs checked against the ring."""

from __future__ import annotations

import math
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raysim import testing
from raysim.analysis import chord as rc
from raysim.errors import ConfigError
from raysim.experiments.config import validate
from raysim.experiments.runner import run
from raysim.protocols import lookup
from raysim.protocols.chord import messages as cm
from raysim.protocols.chord.protocol import Chord, ChordParams
from raysim.protocols.chord.ring import (
    format_finger_tables,
    ideal_ring,
    key_positions,
    node_id,
    node_ids,
    span,
)
from raysim.values.ring import HashRing

from .conftest import canonical

# --- identifiers and the ideal ring ---------------------------------------------------------


def test_node_identifiers_are_the_ring_toolkits_positions() -> None:
    for m in (6, 32, 48):
        ring = HashRing(range(50), vnodes=1, bits=m)
        assert sorted(node_ids(50, m)) == ring.tokens.tolist()
        assert node_id(7, m) == ring.arcs(7)[0][1]
    keys = key_positions(1000, 40)
    assert list(keys) == sorted(HashRing([0], bits=40).positions(np.arange(1000)).tolist())


def test_span_makes_half_open_intervals_with_a_full_turn() -> None:
    mask = 63
    assert span(10, 11, mask) == 1 and span(10, 10, mask) == 64 and span(60, 2, mask) == 6
    inside = [x for x in range(64) if span(60, x, mask) <= span(60, 2, mask)]
    assert inside == [0, 1, 2, 61, 62, 63]  # (60, 2]


def test_ideal_fingers_match_a_brute_force_successor() -> None:
    ring = ideal_ring(64, 12)
    ids = node_ids(64, 12)

    def succ(x: int) -> int:
        return min(range(64), key=lambda n: (ids[n] - x) % 4096)

    for node in (0, 17, 63):
        assert ring.fingers(node) == [succ((ids[node] + 2**i) % 4096) for i in range(12)]
        assert ring.successors(node, 3)[0] == ring.fingers(node)[0]
        assert succ((ids[ring.predecessor(node)] + 1) % 4096) == node


def test_the_8_node_course_ring_prints_its_finger_tables() -> None:
    text = format_finger_tables(8, 6)
    assert "node -> id: 3->14, 2->16, 1->17, 6->28, 0->33, 5->44, 4->46, 7->61" in text
    assert "node 3 (id 14); predecessor node 7 (id 61); keys (61, 14]" in text
    assert text.count("node 0 (id 33)") >= 2
    assert len([ln for ln in text.splitlines() if ln[:4].strip().isdigit()]) == 8 * 6


def test_the_fingers_command_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    rc.main(["fingers", "--nodes", "8", "--bits", "6"])
    assert capsys.readouterr().out.strip() == format_finger_tables(8, 6)
    rc.main(["moves", "--nodes", "64", "--keys", "10"])
    assert capsys.readouterr().out.count("True") == 10


def test_too_few_bits_for_the_nodes_is_a_config_error() -> None:
    data = {"experiment": {"name": "c", "protocol": "chord"}, "network": {"nodes": 8},
            "protocol": {"m": 5, "placement": "index"}}
    with pytest.raises(ConfigError, match=r"m = 5 bits is too few for 8 nodes: nodes \d+ and"):
        validate(data, "t")
    validate({**data, "protocol": {"m": 6, "placement": "index"}}, "t")
    validate({**data, "protocol": {"m": 5}}, "t")  # seeded identifiers never collide


# --- handlers with a fake context -----------------------------------------------------------


class FakeContext(testing.FakeContext):
    """raysim.testing's fake context plus helpers for Chord's timers and replies."""

    def __init__(self, node: int, n_nodes: int, now: int = 0) -> None:
        super().__init__(node, n_nodes, now=now, seed=0)

    @property
    def records(self) -> list[tuple[Any, ...]]:
        """The observations as (name, value, peer, ref), but for the ``chord_id`` a session
        announces first (tested on its own)."""
        return [o[:4] for o in self.observations if o[0] != "chord_id"]

    def live_timers(self, kind: str) -> list[tuple[int, Hashable]]:
        return [(t.id, t.tag) for t in self.pending()
                if t.tag == kind or (isinstance(t.tag, tuple) and t.tag[0] == kind)]

    def fire(self, proto: Chord, kind: str) -> None:
        """Fire the one pending timer of ``kind``."""
        (tid, tag), = self.live_timers(kind)
        self.timers[tid].fired = True
        proto.on_timer(self, tag)

    def take(self) -> list[tuple[int, Any]]:
        return [(s.dst, s.msg) for s in self.take_sent()]


N = 32


def ideal(node: int, **kw: Any) -> tuple[Chord, FakeContext]:
    c = Chord(ChordParams(m=16, lookup_rate=0, placement="index", **kw), node)
    ctx = FakeContext(node, N)
    c.on_start(ctx)
    return c, ctx


def test_a_session_announces_its_identifier_once() -> None:
    c, ctx = ideal(5)
    ids = [o[:2] for o in ctx.observations if o[0] == "chord_id"]
    assert ids == [("chord_id", c.id)] and c.id == c.ids[5]


def test_ideal_start_gives_exact_pointers_keys_and_timers() -> None:
    c, ctx = ideal(5, keys_per_node=10)
    ring = ideal_ring(N, 16)
    assert c.phase == "active"
    assert c.pred == ring.predecessor(5) and c.succs == ring.successors(5, 8)
    assert c.fingers == ring.fingers(5)
    keys = key_positions(10 * N, 16)
    lo, hi = ring.ids[ring.rank[ring.predecessor(5)]], c.id
    assert c.keys == sorted(k for k in keys if span(lo, k, 0xFFFF) <= span(lo, hi, 0xFFFF))
    kinds = sorted(str(t.tag) for t in ctx.timers.values())
    assert kinds == ["check_pred", "fix_fingers", "stabilize"]


def test_stabilize_adopts_a_closer_predecessor_of_the_successor_and_notifies_it() -> None:
    c, ctx = ideal(5)
    old = c.succs[0]
    ctx.take()
    c.on_timer(ctx, "stabilize")
    (dst, msg), = ctx.take()
    assert dst == old and type(msg) is cm.GetPred
    c.succs = c.succs[1:]  # a stale successor: node `old` sits between us and it
    c._rebuild()
    c.on_timer(ctx, "stabilize")
    (dst, msg), = [s for s in ctx.take() if type(s[1]) is cm.GetPred]
    c.on_message(ctx, dst, cm.PredReply(msg.req, old, (dst, 9)))
    assert c.succs[:2] == [old, dst]
    (to1, m1), (to2, m2) = ctx.take()
    assert (to1, m1) == (old, cm.Notify())
    assert to2 == old and type(m2) is cm.GetPred  # a closer successor is asked at once
    assert ctx.storage["succs"][0] == old


def joiner_between() -> tuple[int, int]:
    """A node of a 32-node ring and a node 32..63 whose identifier lies just before it."""
    ring, more = ideal_ring(N, 16), node_ids(2 * N, 16)
    for node in range(N):
        pred_id, me = ring.ids[ring.rank[ring.predecessor(node)]], more[node]
        for j in range(N, 2 * N):
            if 0 < span(pred_id, more[j], 0xFFFF) < span(pred_id, me, 0xFFFF):
                return node, j
    raise AssertionError("no gap found")


def test_notify_from_a_joining_node_moves_exactly_its_keys_to_it() -> None:
    node, j = joiner_between()
    c, ctx = ideal(node, keys_per_node=50)
    c.ids = node_ids(2 * N, 16)  # the same identifiers, and node j's as well
    ctx.n_nodes = 2 * N  # ... in a network that has node j
    before, pred_id, mask = list(c.keys), c.ids[c.pred], c.mask  # type: ignore[index]
    ctx.take()
    c.on_message(ctx, j, cm.Notify())
    assert c.pred == j
    moved = [k for k in before if span(pred_id, k, mask) <= span(pred_id, c.ids[j], mask)]
    assert moved and c.keys == [k for k in before if k not in moved]
    assert ctx.take() == [(j, cm.Keys(tuple(moved)))]
    assert ctx.records == [("keys_moved", float(len(moved)), j, -1)]
    c.on_message(ctx, (node + 1) % N, cm.Notify())  # not in (new predecessor, self): ignored
    assert c.pred == j and ctx.take() == []


def test_iterative_query_answers_done_or_the_closest_preceding_fingers() -> None:
    c, ctx = ideal(5)
    succ_id = c.ids[c.succs[0]]
    c.on_message(ctx, 7, cm.Query(11, succ_id))
    assert ctx.take() == [(7, cm.Done(11, tuple(c.succs)))]
    far = (c.id + 2**15 + 5) & c.mask
    c.on_message(ctx, 7, cm.Query(12, far))
    (_dst, msg), = ctx.take()
    best = max((f for f in c.fingers if f is not None
                and span(c.id, c.ids[f], c.mask) < span(c.id, far, c.mask)),
               key=lambda f: span(c.id, c.ids[f], c.mask))
    assert type(msg) is cm.Next and msg.nodes[0] == best and len(msg.nodes) <= 4


def test_iterative_lookup_routes_around_a_dead_hop_then_gives_up() -> None:
    c, ctx = ideal(5, max_retries=1)
    key = (c.id + 2**15 + 5) & c.mask
    c._lookup(ctx, key, 0)
    (first, q1), = ctx.take()
    assert type(q1) is cm.Query
    ctx.fire(c, "timeout")  # the first hop is dead
    (second, _q2), = ctx.take()
    assert second != first and first not in c.fingers and first in c.suspect
    ctx.fire(c, "timeout")  # and so is the next: max_retries = 1 exceeded
    assert ctx.records[0][:3] == ("lookup", 0.0, -1)
    assert [e[0] for e in ctx.records] == ["lookup", "lookup_latency", "lookup_timeouts"]
    assert ctx.records[2][1] == 2.0 and not c.lookups


def test_iterative_lookup_follows_next_and_probes_the_owner() -> None:
    c, ctx = ideal(5)
    key = (c.id + 2**15 + 5) & c.mask
    c.now = 0
    c._lookup(ctx, key, 0)
    (hop, q), = ctx.take()
    ctx.now = 80
    c.on_message(ctx, hop, cm.Done(q.req, (21, 22)))
    (dst, probe), = ctx.take()
    assert dst == 21 and type(probe) is cm.Probe
    ctx.now = 150
    c.on_message(ctx, 21, cm.Alive(probe.req))
    assert ctx.records == [("lookup", 1.0, 21, key), ("lookup_latency", 150.0, 21, key),
                           ("lookup_timeouts", 0.0, 21, key)]


def test_recursive_hops_are_acknowledged_and_rerouted_after_a_timeout() -> None:
    c, ctx = ideal(5, mode="recursive", max_retries=1)
    key = (c.id + 2**15 + 5) & c.mask
    c.on_message(ctx, 9, cm.Lookup(4, 77, 9, key, 2, 0, False))
    (ack_to, ack), (nxt, fwd) = ctx.take()
    assert (ack_to, ack) == (9, cm.Ack(4))
    assert type(fwd) is cm.Lookup and fwd.hops == 3 and fwd.lid == 77 and fwd.origin == 9
    ctx.fire(c, "timeout")
    (nxt2, fwd2), = ctx.take()
    assert nxt2 != nxt and fwd2.timeouts == 1 and fwd2.hops == 3
    c.on_message(ctx, nxt2, cm.Ack(fwd2.req))  # acknowledged: its timer is cancelled
    assert not ctx.live_timers("timeout")
    c.on_message(ctx, 9, cm.Lookup(5, 78, 9, key, 0, 1, False))
    ctx.take()
    ctx.fire(c, "timeout")  # second timeout of lookup 78: beyond max_retries
    assert ctx.take() == [(9, cm.Failed(78, 2))]


def test_fix_fingers_lookups_use_their_own_message_types() -> None:
    c, ctx = ideal(5)
    c.next_finger = 15
    ctx.take()
    c.on_timer(ctx, "fix_fingers")
    (_, q), = ctx.take()
    assert type(q).__name__ == "FingerQuery" and isinstance(q, cm.Query)
    assert set(cm.MAINTENANCE["fix_fingers"]) >= {"FingerQuery", "FingerNext", "FingerDone"}


def test_phase_table_ignores_what_a_phase_does_not_handle_and_rejects_bad_moves() -> None:
    c = Chord(ChordParams(m=16, bootstrap="join", placement="index"), 3)
    ctx = FakeContext(3, N)
    c.on_start(ctx)
    assert c.phase == "waiting" and next(iter(ctx.timers.values())).tag == "join"
    c.on_message(ctx, 1, cm.Query(1, 5))
    c.on_timer(ctx, "stabilize")
    assert ctx.sent == []
    c.on_timer(ctx, "join")
    assert c.phase == "joining" and type(ctx.sent[0][1]).__name__ == "JoinQuery"
    assert ctx.sent[0][0] == 0  # through node 0, which created the ring
    with pytest.raises(RuntimeError, match="illegal event 'ideal' in phase 'joining'"):
        c._goto("ideal")


def test_a_graceful_leave_hands_keys_and_pointers_over() -> None:
    c, ctx = ideal(5, keys_per_node=20)
    keys, succ, pred = tuple(c.keys), c.succs[0], c.pred
    ctx.take()
    c.on_leave(ctx)
    sent = ctx.take()
    assert (succ, cm.Departing(pred, tuple(c.succs))) in sent  # type: ignore[arg-type]
    assert (pred, cm.Departing(pred, tuple(c.succs))) in sent  # type: ignore[arg-type]
    assert (succ, cm.Keys(keys)) in sent and c.phase == "left"
    heir, hctx = ideal(succ)
    heir.on_message(hctx, 5, cm.Departing(pred, tuple(c.succs)))  # type: ignore[arg-type]
    assert heir.pred == pred and 5 not in heir.fingers


# --- whole runs -----------------------------------------------------------------------------


def chord_config(nodes: int, duration: int, **sections: dict[str, Any]) -> Any:
    data: dict[str, Any] = {
        "experiment": {"name": "chord", "protocol": "chord", "seed": 11, "duration": duration},
        "protocol": {},
        "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 20, "high": 100}},
        "log": {"level": "observations"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return validate(data, "test")


def run_dir(tmp_path: Path, cfg: Any, **kw: Any) -> Path:
    res = run(cfg, tmp_path, **kw)
    assert res.status == "ok", res.error
    return tmp_path / cfg.experiment.name


@pytest.mark.parametrize("mode", ["iterative", "recursive"])
def test_the_ring_forms_from_joins_and_lookups_then_succeed(tmp_path: Path, mode: str) -> None:
    cfg = chord_config(24, 90_000, protocol={"bootstrap": "join", "mode": mode, "snapshot": 10_000,
                                             "lookup_rate": 1.0, "lookup_start": 60_000})
    res = run_dir(tmp_path, cfg)
    ring = rc.ring_correctness(res)
    assert ring["nodes"].iloc[-1] == 24 and ring["correct"].iloc[-1] == 1.0
    assert ring["correct"].iloc[0] < 1.0  # it was not right from the start
    look = rc.lookups(res)
    assert len(look) > 500 and not look["failed"].any()


def test_lookups_on_a_static_ring_are_right_and_about_half_log2_n_hops(tmp_path: Path) -> None:
    off = {"stabilize": 0, "fix_fingers": 0, "check_predecessor": 0}
    cfg = chord_config(1024, 10_000, protocol={**off, "lookup_rate": 0.5})
    look = rc.lookups(run_dir(tmp_path / "it", cfg))
    assert len(look) > 4000 and not look["failed"].any()
    assert abs(look["hops"].mean() - 0.5 * math.log2(1024)) < 0.4  # measured 4.86
    rec = chord_config(1024, 10_000, protocol={**off, "lookup_rate": 0.2, "mode": "recursive"})
    look = rc.lookups(run_dir(tmp_path / "rec", rec))
    assert not look["failed"].any() and abs(look["hops"].mean() - 5.0) < 0.5


def test_keys_move_only_to_joining_nodes_and_are_conserved(tmp_path: Path) -> None:
    cfg = chord_config(
        64, 80_000, protocol={"keys_per_node": 20, "snapshot": 10_000, "lookup_rate": 0.0},
        faults={"churn": {"model": "poisson", "rate": 0.5, "start": 1000, "end": 50_000,
                          "departure": "leave"}},
    )
    res = run_dir(tmp_path, cfg)
    events = pd.read_parquet(next((res / "events").iterdir()))
    obs = events[events["kind"] == "obs"]
    moves = obs[obs["name"] == "keys_moved"]
    joins = events[events["kind"] == "join"]
    leaves = events[events["kind"] == "leave"]
    assert len(joins) > 5 and len(leaves) > 5 and len(moves) > 5
    for m in moves.itertuples():
        if ((leaves["node"] == m.node) & (leaves["time"] == m.time)).any():
            continue  # a leaving node hands its keys to its successor
        # otherwise the receiver is a node in its first minute after (re)joining
        j = joins[(joins["node"] == m.peer) & (joins["time"] <= m.time)]
        assert len(j) and m.time - j["time"].max() < 30_000, m
    last = obs[(obs["name"] == "keys") & (obs["time"] == obs["time"].max())]
    assert last["value"].sum() == 20 * 64  # nothing lost: every departure was graceful
    # and each live node holds exactly the keys in (true predecessor, itself]
    ids = rc.run_ids(rc.chord_runs(res), rc.chord_runs(res)["run_id"].iloc[0])
    live = np.sort(last["node"].to_numpy())
    order = live[np.argsort(ids[live])]
    owner = order[np.searchsorted(ids[order], key_positions(20 * 64, 48)) % len(order)]
    want = pd.Series(owner).value_counts()
    got = last.set_index("node")["value"]
    assert all(got.get(n, 0) == want.get(n, 0) for n in live)


def test_a_20_percent_mass_failure_then_stabilization(tmp_path: Path) -> None:
    cfg = chord_config(512, 75_000, protocol={"lookup_rate": 0.4},
                       faults={"crashes": [{"fraction": 0.2, "at": 15_000}]})
    look = rc.lookups(run_dir(tmp_path, cfg))
    before = look[look["start"] < 14_000]
    soon = look[(look["start"] >= 15_000) & (look["start"] < 25_000)]
    settled = look[look["start"] >= 45_000]
    assert not before["failed"].any()
    assert soon["timeouts"].mean() > 0.3 and 0.0 < soon["failed"].mean() < 0.2
    assert settled["failed"].mean() < 0.005 and len(settled) > 3000
    assert settled["timeouts"].mean() < soon["timeouts"].mean() / 2


def test_maintenance_traffic_is_counted_from_message_types(tmp_path: Path) -> None:
    cfg = chord_config(128, 40_000, protocol={"lookup_rate": 0.2}, log={"level": "all"})
    m = rc.maintenance(run_dir(tmp_path, cfg)).set_index("traffic")["per_node_per_s"]
    # stabilize: GetPred + PredReply per mean period of 2 s; check_predecessor: Ping + Pong
    assert m["stabilize"] == pytest.approx(1.0, rel=0.1)
    assert m["check_predecessor"] == pytest.approx(1.0, rel=0.1)
    assert m["notify"] == pytest.approx(0.5, rel=0.1)
    assert 0 < m["fix_fingers"] < 3 and m["join"] == 0 and m["lookups"] > 1.0


def test_same_seed_same_log_with_churn_and_failures(tmp_path: Path, ray_session: None) -> None:
    cfg = chord_config(
        48, 30_000, protocol={"lookup_rate": 1.0, "keys_per_node": 5, "mode": "recursive"},
        faults={"crashes": [{"fraction": 0.2, "at": 8000}],
                "churn": {"model": "poisson", "rate": 1.0, "start": 2000}},
        log={"level": "all"},
    )
    a = canonical(run_dir(tmp_path / "a", cfg) / "events" / f"run_id={cfg.run_id()}")
    b = canonical(run_dir(tmp_path / "b", cfg) / "events" / f"run_id={cfg.run_id()}")
    pd.testing.assert_frame_equal(a, b)
    assert (a["kind"] == "join").any() and (a["name"] == "lookup").sum() > 100
    r = canonical(run_dir(tmp_path / "r", cfg, backend="ray", shards=2)
                  / "events" / f"run_id={cfg.run_id()}")
    pd.testing.assert_frame_equal(a, r)


def test_chord_is_registered_with_its_parameters() -> None:
    spec = lookup("chord")
    assert spec.cls is Chord
    assert spec.make_params({"mode": "recursive"}).mode == "recursive"  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(m=st.integers(1, 62), data=st.data())
def test_reach_end_is_the_finger_loop_in_one_step(m: int, data: st.DataObject) -> None:
    """``Chord._reach_end(i, node)``: the first finger index from ``i`` whose start
    ``id + 2^j`` is not in ``(id, ids[node]]``, as the loop over the fingers finds it."""
    ids = tuple(data.draw(st.lists(st.integers(0, (1 << m) - 1), min_size=1, max_size=6,
                                   unique=True)))
    node = Chord(ChordParams(m=m), 0)
    node.ids, node.id = ids, ids[0]
    to = data.draw(st.integers(0, len(ids) - 1))  # to == 0: the node itself (a full turn)
    i = data.draw(st.integers(0, m - 1))
    mask = node.mask

    def in_reach(start: int) -> bool:
        return ((start - node.id - 1) & mask) <= ((ids[to] - node.id - 1) & mask)

    want = i
    while want < m and in_reach(node.id + (1 << want)):
        want += 1
    assert node._reach_end(i, to) == want
