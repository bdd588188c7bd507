"""Happens-before analysis, clock checks and causal-order violations on hand-built logs."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest

from raysim.analysis import causality as rcz
from raysim.values.clocks import Order
from raysim.values.history import classify_history

COLUMNS = ["time", "kind", "node", "peer", "msg_id", "msg_type", "name", "value", "seq", "cause"]


def log_from_history(history: list[list[str]]) -> tuple[pd.DataFrame, dict[str, int]]:
    """An event log of a history in ``classify_history``'s shorthand, and each event's row.

    Processes run their events in program order; a receive waits for its send. Local events
    are ``timer`` rows, sends ``send`` rows and receives ``deliver`` rows.
    """
    rows: list[dict[str, object]] = []
    where: dict[str, int] = {}
    sent: dict[str, tuple[int, int]] = {}  # message -> (sender, msg_id)
    nxt = [0] * len(history)
    seq = [0] * len(history)
    t = 0
    while any(nxt[p] < len(history[p]) for p in range(len(history))):
        progressed = False
        for p, events in enumerate(history):
            if nxt[p] >= len(events):
                continue
            ev = events[nxt[p]]
            row: dict[str, object] = dict(
                time=t, node=p, peer=-1, msg_id=-1, msg_type=None, name=None, value=0.0,
                seq=seq[p], cause=-1,
            )
            if "!" in ev:
                name, _, msg = ev.partition("!")
                mid = (p << 32) | len(sent)
                sent[msg] = (p, mid)
                row.update(kind="send", msg_id=mid, msg_type="M")
            elif "?" in ev:
                name, _, msg = ev.partition("?")
                if msg not in sent:
                    continue
                src, mid = sent[msg]
                row.update(kind="deliver", peer=src, msg_id=mid, msg_type="M")
            else:
                name = ev
                row.update(kind="timer", msg_id=seq[p])
            where[name] = len(rows)
            rows.append(row)
            seq[p] += 1
            nxt[p] += 1
            t += 1
            progressed = True
        assert progressed, "history deadlocks"
    return pd.DataFrame(rows, columns=COLUMNS), where


THREE = [
    ["a", "b!m1", "c", "d?m3"],
    ["e?m1", "f!m2", "g"],
    ["h", "i?m2", "j!m3"],
]


def _event_id(hb: rcz.HappensBefore, frame: pd.DataFrame, row: int) -> int:
    r = frame.iloc[row]
    return hb.find(int(r["node"]), int(r["seq"]) + 1)


def test_relations_of_a_three_process_history() -> None:
    frame, where = log_from_history(THREE)
    hb = rcz.happens_before(frame)
    e = {k: _event_id(hb, frame, v) for k, v in where.items()}
    assert hb.relation(e["a"], e["g"]) == rcz.BEFORE
    assert hb.relation(e["j"], e["b"]) == rcz.AFTER
    assert hb.relation(e["c"], e["e"]) == rcz.CONCURRENT
    assert hb.relation(e["h"], e["d"]) == rcz.BEFORE  # h → i → j → d
    assert hb.relation(e["g"], e["d"]) == rcz.CONCURRENT
    assert hb.relation(e["a"], e["a"]) == rcz.SAME
    past = {hb.events["label"].iloc[x] for x in hb.past_of(e["i"])}
    assert past == {"0.1", "0.2", "1.1", "1.2", "2.1"}  # a, b, e, f, h
    future = set(hb.future_of(e["f"]).tolist())
    assert future == {e["g"], e["i"], e["j"], e["d"]}


def _random_history(rng: random.Random, procs: int, steps: int) -> list[list[str]]:
    hist: list[list[str]] = [[] for _ in range(procs)]
    pending: list[tuple[str, int]] = []
    for k in range(steps):
        p = rng.randrange(procs)
        roll = rng.random()
        if roll < 0.3 and pending:
            msg, dst = pending.pop(rng.randrange(len(pending)))
            hist[dst].append(f"r{k}?{msg}")
        elif roll < 0.65:
            dst = rng.choice([q for q in range(procs) if q != p])
            hist[p].append(f"s{k}!m{k}")
            pending.append((f"m{k}", dst))
        else:
            hist[p].append(f"l{k}")
    return hist


@pytest.mark.parametrize("seed", range(6))
def test_graph_agrees_with_vector_clock_replay(seed: int) -> None:
    history = _random_history(random.Random(seed), procs=4, steps=40)
    frame, where = log_from_history(history)
    hb = rcz.happens_before(frame)
    ref = classify_history(history)
    ids = {k: _event_id(hb, frame, v) for k, v in where.items()}
    expect = {Order.BEFORE: rcz.BEFORE, Order.AFTER: rcz.AFTER, Order.CONCURRENT: rcz.CONCURRENT}
    for a, b in itertools.combinations(sorted(ids), 2):
        assert hb.relation(ids[a], ids[b]) == expect[ref.order(a, b)], (a, b)
    lam = hb.lamport()
    for name, eid in ids.items():
        assert lam[eid] == ref.lamport[name]


def test_classify_pairs_counts_every_pair_once() -> None:
    frame, _ = log_from_history(THREE)
    hb = rcz.happens_before(frame)
    pairs = hb.classify_pairs()
    n = len(hb)
    assert len(pairs) == n * (n - 1) // 2
    assert (pairs["a"] < pairs["b"]).all()
    for row in pairs.itertuples():
        assert row.relation == hb.relation(row.a, row.b)
    assert set(pairs["relation"]) == {rcz.BEFORE, rcz.AFTER, rcz.CONCURRENT}


def test_network_records_are_not_events_and_unmatched_deliveries_have_no_edge() -> None:
    frame, _ = log_from_history(THREE)
    extra = pd.DataFrame(
        [
            dict(time=1, kind="drop", node=0, peer=1, msg_id=99, name="loss", seq=-1, cause=-1),
            dict(time=9, kind="deliver", node=2, peer=1, msg_id=12345, seq=99, cause=-1),
        ]
    )
    hb = rcz.happens_before(pd.concat([frame, extra], ignore_index=True))
    assert len(hb) == len(frame) + 1
    orphan = hb.find(2, 4)
    assert hb.events["parent"].iloc[orphan] == -1


def test_delivery_at_the_send_time_on_a_lower_node_is_ordered_after_the_send() -> None:
    rows = [
        dict(time=0, kind="timer", node=0, peer=-1, msg_id=0, seq=0),
        dict(time=5, kind="deliver", node=0, peer=1, msg_id=(1 << 32), seq=1),
        dict(time=5, kind="send", node=1, peer=0, msg_id=(1 << 32), seq=0),
    ]
    hb = rcz.happens_before(pd.DataFrame(rows))
    send, recv = hb.find(1, 1), hb.find(0, 2)
    assert hb.relation(send, recv) == rcz.BEFORE
    assert hb.lamport()[recv] == 2


def _stamp(frame: pd.DataFrame, clocks: dict[int, object], name: str = "lamport") -> pd.DataFrame:
    """Add an observation after each row in ``clocks`` (row -> clock), as a protocol would."""
    out = []
    for i, r in frame.iterrows():
        out.append(r.to_dict())
        if i in clocks:
            ref = r["msg_id"] if r["kind"] in ("send", "deliver") else -1
            out.append(dict(time=r["time"], kind="obs", node=r["node"], peer=r["peer"],
                            msg_id=ref, name=name, value=clocks[i], seq=r["seq"] + 0.5))
    df = pd.DataFrame(out)
    df["seq"] = df.groupby("node")["seq"].rank(method="first").astype(np.int64) - 1
    return df


def _lamport_stamps(frame: pd.DataFrame, with_max: bool) -> dict[int, int]:
    clock: dict[int, int] = {}
    sent: dict[int, int] = {}
    out = {}
    for i, r in frame.iterrows():
        n = int(r["node"])
        c = clock.get(n, 0)
        if r["kind"] == "deliver":
            ts = sent[int(r["msg_id"])]
            c = (max(c, ts) if with_max else c) + 1
        else:
            c += 1
        if r["kind"] == "send":
            sent[int(r["msg_id"])] = c
        clock[n] = c
        out[i] = c
    return out


def test_clock_condition_holds_for_correct_lamport_stamps() -> None:
    frame, _ = log_from_history(THREE)
    stamped = _stamp(frame, _lamport_stamps(frame, with_max=True))
    assert rcz.check_clock_condition(stamped, "lamport") is None


def test_clock_condition_catches_a_lamport_clock_without_the_max() -> None:
    frame, _ = log_from_history(THREE)
    stamped = _stamp(frame, _lamport_stamps(frame, with_max=False))
    v = rcz.check_clock_condition(stamped, "lamport")
    assert v is not None
    # First broken pair: b (P0's send, stamped 2: the largest stamp in the past of e) → e
    # (P1's receive of b, its first event, which stamped 1 without the max).
    hb = rcz.happens_before(stamped)
    assert v.relation == rcz.BEFORE and hb.before(v.a, v.b)
    assert (v.a_label, v.b_label) == ("0.3", "1.1")
    assert (v.a_clock, v.b_clock) == (2, 1)
    assert hb.events["kind"].iloc[v.a] == "send" and hb.events["kind"].iloc[v.b] == "deliver"
    assert "0.3 → 1.1" in v.describe()


def _vector_stamps(frame: pd.DataFrame, n: int, broken: bool) -> dict[int, list[int]]:
    vc = {p: [0] * n for p in range(n)}
    sent: dict[int, list[int]] = {}
    out = {}
    for i, r in frame.iterrows():
        p = int(r["node"])
        v = list(vc[p])
        if r["kind"] == "deliver" and not broken:
            v = [max(x, y) for x, y in zip(v, sent[int(r["msg_id"])], strict=True)]
        v[p] += 1
        if r["kind"] == "send":
            sent[int(r["msg_id"])] = v
        vc[p] = v
        out[i] = v
    return out


def test_vector_clocks_satisfy_the_strong_condition_and_a_broken_one_does_not() -> None:
    frame, _ = log_from_history(THREE)
    good = _stamp(frame, _vector_stamps(frame, 3, broken=False), name="vclock")
    assert rcz.check_clock_condition(good, "vclock", kind="vector") is None
    bad = _stamp(frame, _vector_stamps(frame, 3, broken=True), name="vclock")
    v = rcz.check_clock_condition(bad, "vclock", kind="vector")
    assert v is not None and v.condition == "clock condition"
    # b (P0's send, V = [2, 0, 0]) → e (P1's receive), yet V(e) = [0, 1, 0].
    assert (v.a_label, v.b_label) == ("0.3", "1.1")
    assert (v.a_clock, v.b_clock) == ([2, 0, 0], [0, 1, 0])


def test_vector_clocks_that_order_concurrent_events_break_the_strong_condition() -> None:
    frame, _ = log_from_history(THREE)
    stamps = _vector_stamps(frame, 3, broken=False)
    # Lamport-like vectors: one entry holding the Lamport time orders everything.
    lam = _lamport_stamps(frame, with_max=True)
    stamped = _stamp(frame, {i: [lam[i], 0, 0] for i in stamps}, name="vclock")
    v = rcz.check_clock_condition(stamped, "vclock", kind="vector")
    assert v is not None and v.condition == "strong clock condition"
    assert v.relation == rcz.CONCURRENT


def test_lamport_disagreement_statistics() -> None:
    frame, _ = log_from_history(THREE)
    hb = rcz.happens_before(frame)
    stats = rcz.lamport_disagreement(hb)
    n = len(hb)
    assert stats["pairs"] == n * (n - 1) / 2
    pairs = hb.classify_pairs()
    assert stats["concurrent"] == pytest.approx((pairs["relation"] == rcz.CONCURRENT).mean())
    lam = hb.lamport()
    conc = pairs[pairs["relation"] == rcz.CONCURRENT]
    expect = (lam[conc["a"]] != lam[conc["b"]]).mean()
    assert stats["concurrent_ordered"] == pytest.approx(expect)
    assert 0 < stats["concurrent_ordered"] < 1
    # Lamport order always agrees with real time where causality forces it.
    causal = pairs[pairs["relation"] != rcz.CONCURRENT]
    assert ((lam[causal["a"]] < lam[causal["b"]]) == (causal["relation"] == rcz.BEFORE)).all()


def _broadcast_log(deliveries: dict[int, list[tuple[int, int]]], bcast: dict[int, list[int]]):
    """A causal-broadcast log: ``bcast[node]`` = times of its broadcasts (3 nodes, to all);
    ``deliveries[node]`` = (time, op index) of its applications, op index into the sends."""
    rows = []
    ops = []  # (src, seq, time, {dst: msg_id})
    for src, times in bcast.items():
        for k, t in enumerate(times):
            ids = {}
            for dst in range(3):
                if dst != src:
                    ids[dst] = (src << 32) | len(ids) + 10 * k
            ops.append((src, k + 1, t, ids))
    for src, seq, t, ids in ops:
        rows.append(dict(time=t, kind="obs", node=src, name="broadcast", value=seq, peer=-1,
                         msg_id=-1, order=0))
        for dst, mid in ids.items():
            rows.append(dict(time=t, kind="send", node=src, peer=dst, msg_id=mid, order=1))
    for node, apps in deliveries.items():
        for t, op in apps:
            src, seq, _, ids = ops[op]
            rows.append(dict(time=t, kind="deliver", node=node, peer=src, msg_id=ids[node],
                             order=0))
            rows.append(dict(time=t, kind="obs", node=node, name="apply", value=seq, peer=src,
                             msg_id=ids[node], order=1))
    df = pd.DataFrame(rows).sort_values(["node", "time", "order"], kind="stable")
    df["seq"] = df.groupby("node").cumcount()
    return df.drop(columns="order").reset_index(drop=True)


def test_causal_order_violations_counts_an_application_before_its_dependency() -> None:
    # op0: node 0 at t=0. Node 1 applies op0 at t=5, then broadcasts op1 at t=6.
    # Node 2 applies op1 (t=8) before op0 (t=9): one violation, missing one operation.
    bad = _broadcast_log({1: [(5, 0)], 2: [(8, 1), (9, 0)], 0: [(10, 1)]}, {0: [0], 1: [6]})
    v = rcz.causal_order_violations(bad)
    assert len(v) == 1
    assert v.iloc[0].to_dict() == {"node": 2, "time": 8, "src": 1, "seq": 1, "missing": 1}
    good = _broadcast_log({1: [(5, 0)], 2: [(7, 0), (8, 1)], 0: [(10, 1)]}, {0: [0], 1: [6]})
    assert rcz.causal_order_violations(good).empty


def test_a_received_but_unapplied_operation_is_not_a_dependency() -> None:
    # Node 1 receives op0 before broadcasting op1 but applies it only later (held back):
    # op1 does not depend on op0, so node 2 applying op1 first is no violation.
    log = _broadcast_log({1: [(9, 0)], 2: [(8, 1), (9, 0)], 0: [(10, 1)]}, {0: [0], 1: [6]})
    extra = pd.DataFrame([dict(time=5, kind="deliver", node=1, peer=0, msg_id=(0 << 32) | 0)])
    log = pd.concat([log, extra], ignore_index=True).sort_values(["node", "time"], kind="stable")
    log["seq"] = log.groupby("node").cumcount()
    assert rcz.causal_order_violations(log).empty


def _brute_force(hb: rcz.HappensBefore, st: pd.DataFrame, vector: bool) -> set[tuple[int, int]]:
    """Every pair that breaks the clock condition, by comparing all pairs."""
    ids = st["event"].to_numpy()
    m = hb.before_matrix(ids)
    c = list(st["clock"])
    bad = set()
    for i, j in zip(*np.nonzero(m), strict=True):
        a, b = np.asarray(c[i]), np.asarray(c[j])
        ok = (a <= b).all() and (a != b).any() if vector else int(a) < int(b)
        if not ok:
            bad.add((int(ids[i]), int(ids[j])))
    return bad


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("vector", [False, True])
def test_linear_clock_check_agrees_with_all_pairs(seed: int, vector: bool) -> None:
    rng = random.Random(seed)
    frame, _ = log_from_history(_random_history(rng, procs=3, steps=25))
    if vector:
        stamps: dict[int, object] = {i: [rng.randrange(4) for _ in range(3)] for i in frame.index}
    else:
        stamps = {i: rng.randrange(12) for i in frame.index}
    stamped = _stamp(frame, stamps, name="vclock" if vector else "lamport")
    hb = rcz.happens_before(stamped)
    st = rcz.stamped_events(hb, "vclock" if vector else "lamport")
    bad = _brute_force(hb, st, vector)
    v = rcz.check_clock_condition(hb, "vclock" if vector else "lamport",
                                  kind="vector" if vector else "lamport")
    if not bad:
        assert v is None or v.condition == "strong clock condition"
    else:
        assert v is not None and v.condition == "clock condition"
        assert (v.a, v.b) in bad
        rank = {int(e): k for k, e in enumerate(hb.graph.order.tolist())}
        assert rank[v.b] == min(rank[b] for _, b in bad)  # the first broken event
