"""Retry-with-ack: handlers through a fake context, checks on hand-made logs, and a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raysim.experiments.config import load
from raysim.experiments.runner import run
from raysim.protocols.replication import retry_ack as ra
from raysim.protocols.replication.checks import columns
from tests.replication_fake import FakeContext, FakeNet

EXPERIMENTS = Path(__file__).parent.parent / "experiments"


def make(node: int, n: int = 2, **kw: object) -> tuple[ra.RetryAck, FakeContext]:
    return ra.RetryAck(ra.RetryAckParams(**kw), node), FakeContext(node, n)  # type: ignore[arg-type]


def test_sender_releases_a_window_and_retransmits_on_timeout() -> None:
    s, ctx = make(0, messages=5, window=2, timeout="fixed", rto=100)
    s.on_start(ctx)
    for _ in range(5):
        s.on_timer(ctx, "produce")
    assert [m for _, m in ctx.pairs()] == [ra.Data(0, 0), ra.Data(1, 0)]  # the window is full
    ctx.now = 100
    s.on_timer(ctx, ("rto", 1, 0))
    assert ctx.pairs()[-1] == (1, ra.Data(0, 0))  # same message, same birth time
    assert ctx.live_timers()[-1][0] == 200  # a fixed timeout does not grow


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_in_range() -> None:
    s, ctx = make(0, messages=1, timeout="backoff", rto=100, cap=350)
    s.on_start(ctx)
    s.on_timer(ctx, "produce")
    gaps = []
    for _ in range(4):
        t, _, tag = ctx.live_timers()[-1]
        gaps.append(t - ctx.now)
        ctx.now = t
        s.on_timer(ctx, tag)
    assert gaps == [100, 200, 350, 350]
    j, cj = make(0, messages=1, timeout="fixed", rto=1000, jitter=0.5)
    j.on_start(cj)
    j.on_timer(cj, "produce")
    first = cj.live_timers()[-1][0]
    assert 500 <= first <= 1500 and first != 1000


def test_adaptive_timeout_follows_rfc6298_and_karn() -> None:
    s, ctx = make(0, messages=2, timeout="adaptive", rto=1000)
    s.on_start(ctx)
    s.on_timer(ctx, "produce")
    ctx.now = 80
    s.on_message(ctx, 1, ra.Ack(0, -1))  # first sample R = 80: SRTT 80, RTTVAR 40
    ch = s.channels[1]
    assert (ch.srtt, ch.rttvar, ch.rto) == (80.0, 40.0, 240.0)
    s.on_timer(ctx, "produce")  # message 1 at t = 80, timeout 240
    assert ctx.live_timers()[-1][0] == 320
    ctx.now = 320
    s.on_timer(ctx, ("rto", 1, 1))  # expiry doubles the timeout (§5.5)
    assert ch.rto == 480.0 and ctx.live_timers()[-1][0] == 800
    ctx.now = 400
    s.on_message(ctx, 1, ra.Ack(1, -1))  # a retransmitted message gives no sample (Karn)
    assert ch.srtt == 80.0 and s.done and ctx.names("done") == [(400, -1, -1)]
    assert ctx.names("acked") == [(1, 1, 0), (2, 1, 1)]


def test_receiver_discards_duplicates_and_holds_back_out_of_order() -> None:
    r, ctx = make(1, messages=3, in_order=True, ack="cumulative")
    r.on_message(ctx, 0, ra.Data(1, 0))
    assert ctx.names("apply") == [] and ctx.pairs()[-1] == (0, ra.Ack(1, -1))
    r.on_message(ctx, 0, ra.Data(0, 0))
    assert [v for v, _, _ in ctx.names("apply")] == [0, 1]
    assert ctx.pairs()[-1] == (0, ra.Ack(0, 1))  # everything below 2 arrived
    r.on_message(ctx, 0, ra.Data(1, 0))
    assert ctx.names("duplicate") == [(1, 0, -1)] and len(ctx.names("apply")) == 2
    u, cu = make(1, messages=3, in_order=False)
    u.on_message(cu, 0, ra.Data(2, 0))
    assert [v for v, _, _ in cu.names("apply")] == [2]


def test_cumulative_ack_retires_every_message_below_it() -> None:
    s, ctx = make(0, messages=3, window=3, ack="cumulative")
    s.on_start(ctx)
    for _ in range(3):
        s.on_timer(ctx, "produce")
    s.on_message(ctx, 1, ra.Ack(2, 2))
    assert sorted(r for _, _, r in ctx.names("acked")) == [0, 1, 2] and not s.channels[1].flights


def test_give_up_after_max_retries() -> None:
    s, ctx = make(0, messages=1, timeout="fixed", rto=10, max_retries=2)
    s.on_start(ctx)
    s.on_timer(ctx, "produce")
    for _ in range(3):
        t, _, tag = ctx.live_timers()[-1]
        ctx.now = t
        s.on_timer(ctx, tag)
    assert ctx.names("give_up") == [(3, 1, 0)] and len(ctx.pairs()) == 3


def test_sender_rejects_an_illegal_transition() -> None:
    with pytest.raises(ValueError, match="illegal event 'ack' for a message acked"):
        ra.step(ra.ACKED, "ack")


def test_checks_find_double_and_out_of_order_applies() -> None:
    ev = columns(time=[1, 2, 3, 4], kind=["obs"] * 4, node=[1, 1, 1, 2],
                 name=["apply"] * 4, peer=[0, 0, 0, 0], value=[0.0, 2.0, 2.0, 1.0])
    p = ra.RetryAckParams(in_order=True)
    found = ra.RetryAck.safety(p, ev)
    assert [(v.check, v.time, v.nodes[0]) for v in found] == [("applied_twice", 3, 1)]
    ev2 = columns(time=[1, 2], kind=["obs", "obs"], node=[1, 1], name=["apply", "apply"],
                  peer=[0, 0], value=[2.0, 1.0])
    assert [v.check for v in ra.RetryAck.safety(p, ev2)] == ["out_of_order_apply"]
    assert ra.RetryAck.safety(ra.RetryAckParams(in_order=False), ev2) == []


@pytest.mark.parametrize("timeout,ack", [("fixed", "each"), ("backoff", "cumulative"),
                                         ("adaptive", "each")])
def test_fake_network_at_half_loss_delivers_everything_once_in_order(timeout: str, ack: str
                                                                     ) -> None:
    p = ra.RetryAckParams(messages=30, timeout=timeout, ack=ack, rto=250)  # type: ignore[arg-type]
    net = FakeNet([ra.RetryAck(p, i) for i in range(3)], loss=0.5, seed=4)
    net.start()
    net.run(10**7)
    m = ra.stream_metrics(p, net.events(), 3)
    assert m["delivered_ratio"] == 1.0 and m["applied_twice"] == 0
    assert m["out_of_order_applied"] == 0 and ra.RetryAck.safety(p, net.events()) == []


def test_engine_run_at_half_loss_is_exactly_once_and_near_theory(tmp_path: Path) -> None:
    """Done-when: every message delivered exactly once at 50 % loss (10 seeds, 4 receivers)."""
    tx = []
    for seed in range(10):
        cfg = load(EXPERIMENTS / "retry_ack.toml", [f"experiment.seed={seed}"])
        res = run(cfg, tmp_path)
        assert res.status == "ok"
        # The runner computes the log metrics and checks on this observation-only log.
        assert res.row["metric.delivered_ratio"] == 1.0
        assert res.row["metric.violations"] == 0 == res.row["metric.violations.applied_twice"]
        import pandas as pd

        frame = pd.read_parquet(res.events_dir)
        ev = {c: (frame[c].astype(str).to_numpy() if c in ("kind", "name")
                  else frame[c].to_numpy()) for c in ("time", "kind", "node", "peer",
                                                     "msg_id", "name", "value")}
        p = ra.RetryAckParams(**cfg.protocol)
        m = ra.stream_metrics(p, ev, cfg.network.nodes)
        assert m["delivered_ratio"] == 1.0 and m["applied_twice"] == 0
        assert m["out_of_order_applied"] == 0
        tx.append(m["tx_per_message"])
    # 2000 messages; the mean of a geometric(1/4) count has sd ~ 3.5/sqrt(2000) ~ 0.08
    assert abs(np.mean(tx) - 4.0) < 0.25, tx
