"""Failure detectors: handlers through a recording context, then whole runs and their measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raysim.analysis import detection as rd
from raysim.experiments.config import validate
from raysim.experiments.runner import run
from raysim.protocols.detection.heartbeat import (
    DetectorParams,
    Heartbeat,
    HeartbeatDetector,
    IllegalTransition,
    step,
)
from raysim.protocols.detection.swim import (
    ALIVE,
    DEAD,
    SUSPECT,
    Ack,
    Ping,
    PingReq,
    Swim,
    SwimParams,
    wins,
)
from tests.consensus_support import Ctx


def detector(kind: str, n: int = 4, **kw: Any) -> tuple[HeartbeatDetector, Ctx]:
    d = HeartbeatDetector(DetectorParams(kind=kind, **kw), 0)  # type: ignore[arg-type]
    ctx = Ctx(0, n)
    d.on_start(ctx)
    return d, ctx


def at(d: HeartbeatDetector, ctx: Ctx, now: int, heard: tuple[int, ...] = ()) -> None:
    ctx.now = now
    for src in heard:
        d.on_message(ctx, src, Heartbeat())
    d.on_timer(ctx, "check")


def test_fixed_timeout_suspects_a_silent_peer_and_trusts_it_again() -> None:
    d, ctx = detector("heartbeat", period=100, timeout=300)
    at(d, ctx, 250, heard=(1, 2, 3))
    assert ctx.emitted == []  # still in the initial grace period
    at(d, ctx, 400, heard=(1, 2))
    at(d, ctx, 549)
    assert ctx.emitted == []
    at(d, ctx, 550)  # 3 silent since 250
    assert ctx.emitted == [("suspect", 300, 3, -1)]
    at(d, ctx, 560)
    assert len(ctx.emitted) == 1  # suspected once, not again on every check
    at(d, ctx, 600, heard=(1, 2, 3))
    assert ctx.emitted[-1] == ("trust", 50, 3, -1)


def test_heartbeats_go_to_every_other_node_each_period() -> None:
    d, ctx = detector("heartbeat", n=5)
    ctx.now = 100
    d.on_timer(ctx, "beat")
    assert sorted(dst for dst, _ in ctx.sent) == [1, 2, 3, 4]
    assert ctx.pending("beat") and all(m == Heartbeat() for _, m in ctx.sent)


def test_eventually_perfect_grows_the_timeout_after_a_false_suspicion() -> None:
    d, ctx = detector("eventually_perfect", n=2, period=100, timeout=300, increment=200)
    at(d, ctx, 300, heard=(1,))
    at(d, ctx, 600)
    assert ctx.names() == ["suspect"]
    at(d, ctx, 650, heard=(1,))  # it was alive: the timeout for 1 becomes 500
    assert ctx.names() == ["suspect", "trust"] and d.timeout[1] == 500
    at(d, ctx, 1100)
    assert ctx.names() == ["suspect", "trust"]  # silent 450 < 500
    at(d, ctx, 1150)
    assert ctx.names() == ["suspect", "trust", "suspect"]
    f, fctx = detector("heartbeat", n=2, period=100, timeout=300, increment=200)
    at(f, fctx, 300, heard=(1,))
    at(f, fctx, 650, heard=(1,))
    at(f, fctx, 950)
    assert fctx.names()[-1] == "suspect"  # the fixed timeout does not learn


def test_phi_suspects_by_threshold_on_the_arrival_history() -> None:
    d, ctx = detector("phi", n=2, period=100, timeout=100, threshold=3.0, min_std=10.0)
    for t in (100, 200, 300, 400):
        at(d, ctx, t, heard=(1,))
    at(d, ctx, 510)  # phi(110, 100, 10) ≈ 0.8
    assert ctx.emitted == []
    at(d, ctx, 540)  # phi(140, 100, 10) ≈ 4.5
    assert ctx.names() == ["suspect"]
    lax, lctx = detector("phi", n=2, period=100, timeout=100, threshold=3.0, acceptable_pause=100)
    for t in (100, 200, 300, 400):
        at(lax, lctx, t, heard=(1,))
    at(lax, lctx, 540)
    assert lctx.emitted == []


def test_detector_transitions_and_parameters_are_checked() -> None:
    with pytest.raises(IllegalTransition, match="from trusted on 'heard'"):
        step("trusted", "heard", 0, 1)
    with pytest.raises(ValueError, match="must exceed period"):
        HeartbeatDetector.check(DetectorParams(period=100, timeout=100), 4)


# --- SWIM ------------------------------------------------------------------------------------


def swim(node: int = 0, n: int = 6, **kw: Any) -> tuple[Swim, Ctx]:
    s = Swim(SwimParams(period=500, ack_timeout=100, k=2, suspect_timeout=1000, **kw), node)
    ctx = Ctx(node, n)
    s.on_start(ctx)
    return s, ctx


def test_incarnation_order_of_updates() -> None:
    assert wins((ALIVE, 0), (SUSPECT, 0)) and not wins((SUSPECT, 0), (SUSPECT, 0))
    assert wins((SUSPECT, 0), (ALIVE, 1)) and not wins((SUSPECT, 1), (ALIVE, 1))
    assert wins((SUSPECT, 3), (DEAD, 0)) and not wins((DEAD, 0), (SUSPECT, 5))
    assert wins((DEAD, 0), (ALIVE, 1)) and not wins((DEAD, 2), (ALIVE, 2))


def test_probe_ping_req_then_suspect_then_dead() -> None:
    s, ctx = swim()
    ctx.now = ctx.pending("period")[0]
    s.on_timer(ctx, "period")
    ((target, ping),) = ctx.take()
    assert type(ping) is Ping and ping.origin == 0
    ctx.now += 100
    s.on_timer(ctx, ("indirect", ping.seq))
    reqs = ctx.take()
    assert len(reqs) == 2 and all(type(m) is PingReq and m.target == target for _, m in reqs)
    assert target not in {d for d, _ in reqs}
    ctx.now += 400
    s.on_timer(ctx, "period")  # no ack: suspect the target, probe the next one
    assert ctx.emitted[0] == ("suspect", 0, target, -1)
    assert ctx.take()[0][1].updates[0] == (target, SUSPECT, 0)  # piggybacked
    confirm = [g for _t, g in ctx.timers.values() if isinstance(g, tuple) and g[0] == "confirm"]
    assert confirm == [("confirm", target, 0)]
    s.on_timer(ctx, ("confirm", target, 0))
    assert ctx.emitted[-1] == ("dead", 0, target, -1) and s.view[target] == (DEAD, 0)


def test_an_ack_keeps_the_target_trusted_and_pings_are_answered() -> None:
    s, ctx = swim()
    ctx.now = ctx.pending("period")[0]
    s.on_timer(ctx, "period")
    ((target, ping),) = ctx.take()
    s.on_message(ctx, target, Ack(ping.seq, 0, target, ()))
    s.on_timer(ctx, "period")
    assert ctx.emitted == []
    s.on_message(ctx, 4, Ping(7, 4, ()))
    assert ctx.take()[-1] == (4, Ack(7, 4, 0, ()))


def test_indirect_probe_relays_the_ack() -> None:
    s, ctx = swim(node=1)
    s.on_message(ctx, 0, PingReq(5, 3, ()))
    assert ctx.take() == [(3, Ping(5, 0, ()))]
    s.on_message(ctx, 3, Ack(5, 0, 3, ()))
    assert ctx.take() == [(0, Ack(5, 0, 3, ()))]


def test_a_suspected_member_refutes_with_a_higher_incarnation() -> None:
    s, ctx = swim(node=2)
    s.on_message(ctx, 0, Ping(1, 0, ((2, SUSPECT, 0),)))
    (_dst, ack), = ctx.take()
    assert s.inc == 1 and ctx.storage["inc"] == 1 and (2, ALIVE, 1) in ack.updates
    other, octx = swim(node=0)
    other.on_message(octx, 3, Ping(1, 3, ((2, SUSPECT, 0),)))
    other.on_message(octx, 3, Ping(2, 3, ((2, ALIVE, 1),)))
    assert octx.names() == ["suspect", "trust"] and other.view[2] == (ALIVE, 1)


def test_swim_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="ack_timeout"):
        Swim.check(SwimParams(period=100, ack_timeout=100), 8)
    with pytest.raises(ValueError, match="k"):
        Swim.check(SwimParams(k=7), 8)


# --- whole runs ------------------------------------------------------------------------------


def detector_config(protocol: str, **proto: Any) -> Any:
    return validate({
        "experiment": {"name": "det_t", "protocol": protocol, "seed": 4, "duration": 8000},
        "protocol": proto,
        "network": {"nodes": 8, "delay": {"dist": "uniform", "low": 10, "high": 30}},
        "faults": {"crashes": [{"node": 3, "at": 3000}]},
        "log": {"level": "observations"},
    }, "test")


@pytest.mark.parametrize(
    ("protocol", "proto"),
    [("detection.heartbeat", {"timeout": 300}), ("detection.phi", {"threshold": 8.0}),
     ("detection.swim", {"period": 300, "ack_timeout": 80})],
)
def test_every_live_node_detects_the_crash(tmp_path: Path, protocol: str, proto: dict) -> None:
    res = run(detector_config(protocol, **proto), tmp_path)
    assert res.status == "ok"
    (row,) = rd.detector_runs(tmp_path / "det_t").to_dict("records")
    assert 0 < row["detect_first"] <= row["detect_all"] < 5000
    assert row["false_suspicions"] == 0.0  # no loss, delays far below every timeout
    assert row["messages_per_node_s"] > 0


def test_swim_theory_matches_hand_computation() -> None:
    th = rd.swim_theory(n=12, crashed=1, loss=0.1, k=3, period=200)
    q = 0.9
    assert th["false_episodes"] == pytest.approx(
        (1 - q**2) * (1 - 11 / 12 * q**4) ** 3 / 0.2)
    assert th["detect_first"] == pytest.approx(200 / (1 - (10 / 11) ** 11))
    assert rd.swim_theory(12, 1, 0.0, 3, 200)["false_episodes"] == 0.0
