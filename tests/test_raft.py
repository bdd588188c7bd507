"""Raft and the naive leader election: handlers through a recording context, then whole runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from raysim.api.protocol import Context, register
from raysim.experiments.config import validate
from raysim.experiments.runner import run
from raysim.protocols.consensus import checks as ck
from raysim.protocols.consensus.messages import (
    NOOP,
    READ,
    WRITE,
    AppendEntries,
    AppendReply,
    Reply,
    Request,
    RequestVote,
    VoteReply,
)
from raysim.protocols.consensus.naive import Hello, NaiveLeader, NaiveParams
from raysim.protocols.consensus.raft import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    IllegalTransition,
    Raft,
    RaftParams,
    clock_rate,
)
from tests.consensus_support import Ctx, columns


def server(node: int, n: int = 5, **kw: Any) -> tuple[Raft, Ctx]:
    r = Raft(RaftParams(**kw), node)
    ctx = Ctx(node, n)
    r.on_start(ctx)
    return r, ctx


def elect(r: Raft, ctx: Ctx, voters: list[int]) -> None:
    """Time out, then collect votes from ``voters``."""
    r.on_timer(ctx, "election")
    term = ctx.storage["term"]
    for v in voters:
        r.on_message(ctx, v, VoteReply(term, True))


def test_timeout_makes_a_candidate_that_asks_every_server() -> None:
    r, ctx = server(2)
    assert r.role == FOLLOWER and len(ctx.pending("election")) == 1
    assert 150 <= ctx.pending("election")[0] <= 300
    r.on_timer(ctx, "election")
    assert r.role == CANDIDATE and ctx.storage["term"] == 1 and ctx.storage["voted_for"] == 2
    sent = ctx.take()
    assert sorted(d for d, _ in sent) == [0, 1, 3, 4]
    assert all(m == RequestVote(1, 0, 0) for _, m in sent)
    assert ctx.emitted == [("candidate", 1, -1, -1)]
    assert len(ctx.pending("election")) == 1  # the old timer was cancelled, a new one set


def test_one_vote_per_term_and_only_for_an_up_to_date_log() -> None:
    r, ctx = server(0)
    r.on_message(ctx, 1, RequestVote(1, 0, 0))
    r.on_message(ctx, 2, RequestVote(1, 0, 0))
    r.on_message(ctx, 1, RequestVote(1, 0, 0))  # the same candidate asks again: still yes
    assert [m for _, m in ctx.take()] == [VoteReply(1, True), VoteReply(1, False),
                                         VoteReply(1, True)]
    ctx.storage["log"].append((1, 7, WRITE, 7.0))
    r.on_message(ctx, 3, RequestVote(2, 0, 0))  # newer term, but an older log
    assert ctx.take() == [(3, VoteReply(2, False))] and ctx.storage["term"] == 2
    r.on_message(ctx, 4, RequestVote(2, 1, 1))
    assert ctx.take() == [(4, VoteReply(2, True))]


def test_a_majority_makes_a_leader_that_appends_a_noop_and_replicates() -> None:
    r, ctx = server(0)
    elect(r, ctx, [1])
    assert r.role == CANDIDATE  # 2 of 5 is no majority
    ctx.take()
    r.on_message(ctx, 2, VoteReply(1, True))
    assert r.role == LEADER and "leader" in ctx.names()
    assert ctx.storage["log"] == [(1, -2, NOOP, 0.0)]
    sent = ctx.take()
    assert sorted(d for d, _ in sent) == [1, 2, 3, 4]
    assert all(m == AppendEntries(1, 0, 0, ((1, -2, NOOP, 0.0),), 0, 1) for _, m in sent)
    assert ctx.pending("election") == [] and len(ctx.pending("heartbeat")) == 1


def test_a_higher_term_demotes_a_leader() -> None:
    r, ctx = server(0)
    elect(r, ctx, [1, 2])
    r.on_message(ctx, 3, AppendReply(5, False, 0, 1))
    assert r.role == FOLLOWER and ctx.storage["term"] == 5
    assert ("step_down", 1, -1, -1) in ctx.emitted


def test_illegal_transitions_raise() -> None:
    r, _ = server(0)
    with pytest.raises(IllegalTransition, match="from follower on 'win'"):
        r._go("win")


def test_consistency_check_rejects_gaps_and_truncates_conflicts() -> None:
    r, ctx = server(1)
    r.on_message(ctx, 0, AppendEntries(1, 3, 1, ((1, 9, WRITE, 9.0),), 0, 1))
    assert ctx.take() == [(0, AppendReply(1, False, 0, 1))]
    e1, e2, e3 = (1, 5, WRITE, 5.0), (1, 6, WRITE, 6.0), (2, 8, WRITE, 8.0)
    r.on_message(ctx, 0, AppendEntries(1, 0, 0, (e1, e2), 1, 2))
    assert ctx.take() == [(0, AppendReply(1, True, 2, 2))]
    assert ctx.storage["log"] == [e1, e2] and r.commit == 1 and r.register == 5.0
    # a leader of term 2 overwrites index 2
    r.on_message(ctx, 3, AppendEntries(2, 1, 1, (e3,), 2, 1))
    assert ctx.storage["log"] == [e1, e3] and r.commit == 2 and r.register == 8.0
    names = ctx.names()
    assert names.count("entry") == 3 and "truncate" in names and names.count("commit") == 2
    # a stale leader is refused
    ctx.take()
    r.on_message(ctx, 0, AppendEntries(1, 0, 0, (), 0, 3))
    assert ctx.take() == [(0, AppendReply(2, False, 0, 3))]


def test_leader_commits_on_a_majority_and_answers_the_client() -> None:
    r, ctx = server(0, n=4, clients=1)  # servers 0-2, client 3
    elect(r, ctx, [1])
    ctx.take()
    r.on_message(ctx, 3, Request(77, WRITE, 77.0))
    assert ctx.storage["log"][-1] == (1, 77, WRITE, 77.0)
    r.on_message(ctx, 1, AppendReply(1, True, 2, 1))
    assert r.commit == 2 and (3, Reply(77, True, 77.0, 0)) in ctx.take()
    # a retry of the same operation is answered from the results, not appended again
    r.on_message(ctx, 3, Request(77, WRITE, 77.0))
    assert ctx.take() == [(3, Reply(77, True, 77.0, 0))] and len(ctx.storage["log"]) == 2


def test_old_term_entries_commit_only_through_a_current_one() -> None:
    r, ctx = server(0, n=3)
    ctx.storage["log"].append((1, 5, WRITE, 5.0))
    ctx.storage["term"] = 1
    elect(r, ctx, [1])  # term 2, noop at index 2
    r.on_message(ctx, 1, AppendReply(2, True, 1, 1))
    assert r.commit == 0  # index 1 is of term 1: not committed by counting
    r.on_message(ctx, 1, AppendReply(2, True, 2, 1))
    assert r.commit == 2


def test_followers_redirect_clients_and_clients_follow() -> None:
    r, ctx = server(1, n=4, clients=1)
    r.on_message(ctx, 0, AppendEntries(1, 0, 0, (), 0, 1))
    r.on_message(ctx, 3, Request(5, READ, -1.0))
    assert ctx.take()[-1] == (3, Reply(5, False, 0.0, 0))
    c, cc = server(3, n=4, clients=1)
    (when,) = cc.pending("op")
    cc.now = when
    c.on_timer(cc, "op")
    (dst, req), = cc.take()
    assert type(req) is Request and cc.names() == [("read" if req.kind == READ else "write")]
    other = (dst + 1) % 3
    c.on_message(cc, dst, Reply(req.op, False, 0.0, other))
    assert cc.take() == [(other, req)]
    c.on_message(cc, other, Reply(req.op, True, 4.0, other))
    assert cc.emitted[-1] == ("ok", 4.0, -1, req.op) and cc.pending("op")


def test_client_retries_with_a_doubling_timeout() -> None:
    c, cc = server(3, n=4, clients=1, client_timeout=100, client_timeout_max=350)
    cc.now = cc.pending("op")[0]
    c.on_timer(cc, "op")
    waits = []
    for _ in range(4):
        (t,) = cc.pending("retry")
        waits.append(t - cc.now)
        cc.now = t
        c.on_timer(cc, "retry")
    assert waits == [100, 200, 350, 350] and len(cc.take()) == 5


def test_leases_refuse_votes_and_serve_reads_locally() -> None:
    r, ctx = server(0, n=4, clients=1, lease=True, election_min=150, election_max=300)
    r.on_message(ctx, 1, AppendEntries(0, 0, 0, (), 0, 1))  # a leader of term 0 at time 0
    ctx.take()
    ctx.now = 100
    r.on_message(ctx, 1, RequestVote(1, 0, 0))
    assert ctx.take() == [] and ctx.storage["term"] == 0  # heard a leader 100 ticks ago
    fresh, fctx = server(2, n=4, clients=1, lease=True)
    fresh.on_message(fctx, 1, RequestVote(1, 0, 0))
    assert fctx.take() == [(1, VoteReply(1, True))]  # at time 0 nobody holds a lease
    rec = Raft(RaftParams(clients=1, lease=True), 3 - 1)
    rctx = Ctx(2, 4, now=5000)
    rec.on_start(rctx)  # a recovery: refuses votes for election_min
    rec.on_message(rctx, 1, RequestVote(1, 0, 0))
    assert rctx.take() == []
    ctx.now = 200
    elect(r, ctx, [1])
    assert r.role == LEADER
    r.on_message(ctx, 1, AppendReply(1, True, 1, 1))  # majority acked round 1 (sent at 200)
    lease = [e for e in ctx.emitted if e[0] == "lease"]
    assert lease == [("lease", 350, -1, 1)] and r.commit == 1
    ctx.take()
    ctx.now = 300
    r.on_message(ctx, 3, Request(9, READ, -1.0))
    assert ctx.take() == [(3, Reply(9, True, 0.0, 0))]  # no log round trip
    ctx.now = 360
    r.on_message(ctx, 3, Request(10, READ, -1.0))
    assert ctx.storage["log"][-1][1] == 10  # lease over: through the log


def test_clock_rates_spread_within_the_drift() -> None:
    rates = [clock_rate(n, 0.1) for n in range(200)]
    assert all(0.9 <= x <= 1.1 for x in rates) and max(rates) - min(rates) > 0.15
    assert clock_rate(3, 0.0) == 1.0


def test_naive_node_leads_when_nobody_lower_is_heard() -> None:
    p = NaiveParams(period=50, timeout=150)
    n, ctx = NaiveLeader(p, 2), Ctx(2, 4)
    n.on_start(ctx)
    for now in (100, 200):
        ctx.now = now
        n.on_timer(ctx, "round")
    assert ctx.names() == ["leader"] and n.role == "leader"
    assert {d for d, m in ctx.sent} == {0, 1, 3} and all(m == Hello() for _, m in ctx.sent)
    n.on_message(ctx, 1, Hello())
    ctx.now = 250
    n.on_timer(ctx, "round")
    assert ctx.names() == ["leader", "step_down"]
    ctx.now = 500  # node 1 silent for longer than the timeout
    n.on_timer(ctx, "round")
    assert ctx.names() == ["leader", "step_down", "leader"]


def test_naive_timeout_must_exceed_the_period() -> None:
    with pytest.raises(ValueError, match="must exceed period"):
        NaiveLeader.check(NaiveParams(period=50, timeout=50), 5)


# --- whole runs ----------------------------------------------------------------------------


def raft_config(name: str = "consensus.raft", seed: int = 1, **over: Any) -> Any:
    data: dict[str, Any] = {
        "experiment": {"name": "raft_t", "protocol": name, "seed": seed, "duration": 3000},
        "protocol": {"clients": 2, "first_leader": 0, "client_start": 300, "client_interval": 50},
        "network": {"nodes": 7, "delay": {"dist": "uniform", "low": 10, "high": 30}},
        "faults": {
            "loss": 0.05,
            "crashes": [{"node": 0, "at": 1000, "recover_at": 1800}],
            "partitions": [{"a": "1", "start": 2000, "end": 2500}],
        },
        "log": {"level": "observations"},
    }
    for k, v in over.items():
        data[k].update(v)
    return validate(data, "test")


def test_raft_run_elects_again_after_a_crash_and_keeps_every_property(tmp_path: Path) -> None:
    res = run(raft_config(), tmp_path)
    assert res.status == "ok" and res.events_dir is not None
    log = columns(res.events_dir)
    leaders = ck.rows_of(log, "leader")
    assert leaders.node[0] == 0 and (leaders.time > 1000).any()  # a new leader after the crash
    assert len(ck.rows_of(log, "ok")) > 8  # clients made progress
    assert Raft.safety(RaftParams(clients=2), log) == []
    # the election measures are run-row columns (metric.<name> of runs.parquet)
    row = pd.read_parquet(tmp_path / "raft_t" / "runs.parquet").iloc[0]
    later = leaders.time > 1000
    assert row["metric.elected"] == 1.0
    assert row["metric.election_time"] == leaders.time[later][0] - 1000
    assert row["metric.election_terms"] == leaders.value[later][0] - leaders.value[0] >= 1
    cands = set(ck.rows_of(log, "candidate").value.tolist())
    won = set(leaders.value.tolist())
    assert row["metric.split_votes"] == len(cands - won)
    assert row["metric.terms_per_election"] == len(cands | won) / len(won)
    assert row["metric.ops"] == len(ck.rows_of(log, "ok")) and row["metric.latency_mean"] > 0


@register("test.raft_two_votes")
class TwoVotes(Raft):
    """A broken Raft: grants a vote to every candidate of its current term."""

    checks: ClassVar[tuple[str, ...]] = Raft.checks

    def _request_vote(self, ctx: Context, src: int, msg: RequestVote) -> None:
        st = ctx.storage
        if msg.term > st["term"]:
            self._adopt(ctx, msg.term)
        granted = msg.term == st["term"]
        ctx.send(src, VoteReply(st["term"], granted))


def test_the_checkers_catch_a_raft_that_votes_twice(tmp_path: Path) -> None:
    found: list[ck.Violation] = []
    for seed in range(3):
        cfg = raft_config(
            "test.raft_two_votes", seed,
            protocol={"election_min": 150, "election_max": 152, "first_leader": -1},
            network={"delay": {"dist": "uniform", "low": 10, "high": 60}},
        )
        res = run(cfg, tmp_path)
        assert res.status == "ok" and res.events_dir is not None
        found += TwoVotes.safety(RaftParams(), columns(res.events_dir))
    checks = {v.check for v in found}
    assert "election_safety" in checks
    # and the same runs with the real Raft are clean
    for seed in range(3):
        cfg = raft_config(
            seed=seed, protocol={"election_min": 150, "election_max": 152, "first_leader": -1},
            network={"delay": {"dist": "uniform", "low": 10, "high": 60}},
        )
        res = run(cfg, tmp_path)
        assert res.events_dir is not None
        assert Raft.safety(RaftParams(), columns(res.events_dir)) == []


def test_naive_election_elects_two_leaders_under_a_partition(tmp_path: Path) -> None:
    cfg = validate({
        "experiment": {"name": "naive_t", "protocol": "consensus.naive_leader", "seed": 2,
                       "duration": 3000},
        "network": {"nodes": 5, "delay": {"dist": "uniform", "low": 10, "high": 30}},
        "faults": {"partitions": [{"a": "0", "start": 1000, "end": 2000}]},
        "log": {"level": "observations"},
    }, "test")
    res = run(cfg, tmp_path)
    assert res.events_dir is not None
    found = NaiveLeader.safety(NaiveParams(), columns(res.events_dir))
    assert found and found[0].check == "single_leader" and 0 in found[0].nodes
    assert 1000 <= found[0].time < 2000
    row = pd.read_parquet(tmp_path / "naive_t" / "runs.parquet").iloc[0]
    assert row["metric.leader_nodes"] >= 2 and row["metric.leader_changes"] >= 2
    assert 0 < row["metric.two_leader_ticks"] <= 1000 + 150  # while partitioned (+ a timeout)


@pytest.mark.parametrize(
    ("name", "nodes", "proto"),
    [
        ("consensus.raft", 7, {"clients": 2, "lease": True, "clock_drift": 0.2}),
        ("consensus.naive_leader", 5, {}),
        ("consensus.quorum_register", 7, {"clients": 2, "read_repair": True}),
        ("detection.swim", 8, {"period": 200, "ack_timeout": 80}),
        ("detection.phi", 6, {}),
    ],
)
def test_same_log_on_local_and_on_ray_with_two_shards(
    tmp_path: Path, ray_session: None, name: str, nodes: int, proto: dict
) -> None:
    from tests.conftest import canonical

    cfg = validate({
        "experiment": {"name": "det", "protocol": name, "seed": 9, "duration": 3000},
        "protocol": proto,
        "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 10, "high": 40}},
        "faults": {"loss": 0.1, "duplicate": 0.05,
                   "crashes": [{"node": 1, "at": 800, "recover_at": 1600}],
                   "partitions": [{"a": "0", "start": 1200, "end": 2000}]},
    }, "test")
    logs = []
    for layout in ({"backend": "local"}, {"backend": "ray", "shards": 2}):
        res = run(cfg, tmp_path / layout["backend"], **layout)  # type: ignore[arg-type]
        assert res.status == "ok" and res.events_dir is not None
        logs.append(canonical(res.events_dir))
    assert len(logs[0]) > 100
    pd.testing.assert_frame_equal(logs[0], logs[1])


def test_a_recovered_client_never_reuses_an_operation_id() -> None:
    c, cc = server(3, n=4, clients=1)
    cc.now = cc.pending("op")[0]
    c.on_timer(cc, "op")
    first = c.op
    again = Raft(RaftParams(clients=1), 3)
    rctx = Ctx(3, 4, now=cc.now + 1000)
    rctx.storage = cc.storage  # what survives the crash
    again.on_start(rctx)
    rctx.now = rctx.pending("op")[0]
    again.on_timer(rctx, "op")
    assert again.op == first + 1


def test_a_granted_vote_is_answered_after_the_disk_write() -> None:
    r, ctx = server(0, vote_write=7)
    r.on_message(ctx, 1, RequestVote(1, 0, 0))
    r.on_message(ctx, 2, RequestVote(1, 0, 0))  # refused at once: no write to wait for
    assert ctx.take() == [(2, VoteReply(1, False))] and ctx.storage["voted_for"] == 1
    assert ctx.pending(("vote", 1, 1)) == [7]
    r.on_timer(ctx, ("vote", 1, 1))
    assert ctx.take() == [(1, VoteReply(1, True))]
