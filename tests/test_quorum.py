"""The quorum register: replica and client handlers, then stale reads against R + W."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raysim.analysis import quorum as rq
from raysim.experiments.config import validate
from raysim.experiments.runner import run
from raysim.protocols.consensus.quorum import (
    Get,
    GetReply,
    IllegalTransition,
    Put,
    PutAck,
    QuorumParams,
    QuorumRegister,
    Siblings,
)
from raysim.values.versions import VersionVector as VV
from tests.consensus_support import Ctx


def node(i: int, n: int = 5, **kw: Any) -> tuple[QuorumRegister, Ctx]:
    q = QuorumRegister(QuorumParams(clients=2, **kw), i)  # replicas 0-2, clients 3-4
    ctx = Ctx(i, n)
    q.on_start(ctx)
    return q, ctx


def test_replica_keeps_the_highest_version() -> None:
    q, ctx = node(0)
    q.on_message(ctx, 3, Put(1, (10, 3), 7.0))
    q.on_message(ctx, 4, Put(2, (5, 4), 9.0))  # older: acknowledged, not stored
    q.on_message(ctx, 4, Get(3))
    assert ctx.take() == [(3, PutAck(1)), (4, PutAck(2)), (4, GetReply(3, (10, 3), 7.0))]
    q.on_message(ctx, 4, Put(-1, (11, 4), 8.0))  # read repair: no ack
    assert ctx.take() == [] and q.value == 8.0


def test_vector_replica_keeps_concurrent_writes_as_siblings() -> None:
    q, ctx = node(0, versions="vector")
    a, b = VV({3: 1}), VV({4: 1})  # two clients' first writes: neither saw the other
    q.on_message(ctx, 3, Put(1, a, 7.0))
    q.on_message(ctx, 4, Put(2, b, 9.0))
    q.on_message(ctx, 3, Put(-1, a, 7.0))  # a repeat: nothing new
    q.on_message(ctx, 4, Get(3))
    assert ctx.take()[-1] == (4, Siblings(3, ((a, 7.0), (b, 9.0))))
    q.on_message(ctx, 3, Put(4, a.merge(b).increment(3), 5.0))  # saw both: replaces both
    q.on_message(ctx, 4, Get(5))
    assert ctx.take()[-1] == (4, Siblings(5, ((VV({3: 2, 4: 1}), 5.0),)))
    # timestamps order the same two writes instead: one is silently lost
    t, tc = node(0)
    t.on_message(tc, 3, Put(1, (10, 3), 7.0))
    t.on_message(tc, 4, Put(2, (11, 4), 9.0))
    assert t.value == 9.0


def test_vector_client_reports_siblings_and_its_next_write_supersedes_them() -> None:
    q, ctx = node(3, r=2, read_fraction=1.0, versions="vector", read_repair=True)
    op = start_op(q, ctx)[0][1].op
    a, b = VV({3: 1}), VV({4: 1})
    q.on_message(ctx, 0, Siblings(op, ((a, 7.0),)))
    q.on_message(ctx, 1, Siblings(op, ((a, 7.0), (b, 9.0))))
    assert ctx.emitted[1:] == [("siblings", 2, -1, op), ("ok", 9.0, -1, op)]
    assert ctx.take() == [(0, Put(-1, b, 9.0))]  # repair: replica 0 lacked b
    q.p = QuorumParams(clients=2, read_fraction=0.0, versions="vector")
    put = start_op(q, ctx)[0][1]
    assert put.version == VV({3: 2, 4: 1})  # dominates both siblings


def start_op(q: QuorumRegister, ctx: Ctx) -> Any:
    ctx.now = ctx.pending("op")[0]
    q.on_timer(ctx, "op")
    return ctx.take()


def test_client_write_completes_on_w_acks() -> None:
    q, ctx = node(3, w=2, read_fraction=0.0)
    sent = start_op(q, ctx)
    assert sorted(d for d, _ in sent) == [0, 1, 2]  # fanout all
    op = sent[0][1].op
    assert ctx.emitted == [("write", float(op), -1, op)]
    q.on_message(ctx, 0, PutAck(op))
    assert len(ctx.emitted) == 1
    q.on_message(ctx, 2, PutAck(op))
    assert ctx.emitted[-1] == ("ok", float(op), -1, op) and ctx.pending("op")
    q.on_message(ctx, 1, PutAck(op))  # late: ignored
    assert len(ctx.emitted) == 2


def test_client_read_takes_the_newest_of_r_and_repairs() -> None:
    q, ctx = node(3, r=2, read_fraction=1.0, fanout="quorum", read_repair=True)
    sent = start_op(q, ctx)
    assert len(sent) == 2 and all(type(m) is Get for _, m in sent)
    (a, m), (b, _) = sent
    q.on_message(ctx, a, GetReply(m.op, (5, 4), 9.0))
    q.on_message(ctx, b, GetReply(m.op, (1, 3), 2.0))
    assert ctx.emitted[-1] == ("ok", 9.0, -1, m.op)
    assert ctx.take() == [(b, Put(-1, (5, 4), 9.0))]


def test_an_unanswered_operation_is_abandoned() -> None:
    q, ctx = node(3, read_fraction=1.0, timeout=100)
    sent = start_op(q, ctx)
    op = sent[0][1].op
    q.on_timer(ctx, ("timeout", op))
    assert q.phase == "idle" and [e[0] for e in ctx.emitted] == ["read"]
    with pytest.raises(IllegalTransition):
        q._go("done")


def test_quorums_must_fit_the_replicas() -> None:
    with pytest.raises(ValueError, match="w \\(4\\) must be at most the 3 replicas"):
        QuorumRegister.check(QuorumParams(clients=2, w=4), 5)


def test_stale_reads_exactly_when_quorums_need_not_meet(tmp_path: Path) -> None:
    def cfg(w: int, r: int) -> Any:
        return validate({
            "experiment": {"name": "q_t", "protocol": "consensus.quorum_register", "seed": 2,
                           "duration": 4000},
            "protocol": {"clients": 2, "w": w, "r": r, "fanout": "quorum", "interval": 20},
            "network": {"nodes": 7,
                        "delay": {"dist": "lognormal", "median": 20, "sigma": 1.0, "min": 5}},
            "log": {"level": "observations"},
        }, "test")

    for w, r in ((1, 1), (2, 2), (3, 3), (2, 4)):
        assert run(cfg(w, r), tmp_path).status == "ok"
    frame = rq.quorum_runs(tmp_path / "q_t").set_index(["protocol.w", "protocol.r"])
    assert frame.loc[(1, 1), "stale_reads"] > 0 and frame.loc[(2, 2), "stale_reads"] > 0
    assert frame.loc[(3, 3), "stale_reads"] == 0 and frame.loc[(2, 4), "stale_reads"] == 0
    assert frame.loc[(1, 1), "linearizable"] == 0.0
    assert (frame["reads"] > 10).all()


def test_vector_versions_detect_concurrent_writes_in_a_run(tmp_path: Path) -> None:
    rows = {}
    for versions in ("timestamp", "vector"):
        res = run(validate({
            "experiment": {"name": f"qv_{versions}", "protocol": "consensus.quorum_register",
                           "seed": 3, "duration": 2000},
            "protocol": {"clients": 3, "w": 2, "r": 2, "interval": 20, "versions": versions},
            "network": {"nodes": 6, "delay": {"dist": "uniform", "low": 5, "high": 30}},
            "log": {"level": "observations"},
        }, "test"), tmp_path)
        assert res.status == "ok"
        rows[versions] = res.row
    assert rows["timestamp"]["metric.sibling_reads"] == 0
    assert rows["vector"]["metric.sibling_reads"] > 0
    assert rows["vector"]["metric.reads"] > 10
    assert 0 < rows["vector"]["metric.sibling_read_fraction"] <= 1
