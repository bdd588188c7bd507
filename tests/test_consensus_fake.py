"""Raft, SWIM and the quorum register through raysim.testing.FakeContext (checked observations)."""

from __future__ import annotations

from raysim.protocols.consensus import checks as ck
from raysim.protocols.consensus.raft import LEADER, Raft, RaftParams
from raysim.protocols.detection.swim import Swim, SwimParams
from raysim.testing import FakeContext


def test_three_fake_raft_servers_elect_one_leader_and_commit() -> None:
    params = RaftParams(first_leader=0)
    ctxs = [FakeContext(i, 3) for i in range(3)]
    nodes = [Raft(params, i) for i in range(3)]
    for n, c in zip(nodes, ctxs, strict=True):
        n.on_start(c)  # type: ignore[arg-type]
    for now in range(1, 400):
        for n, c in zip(nodes, ctxs, strict=True):
            c.fire_timers(n, now)  # type: ignore[arg-type]
        for i, c in enumerate(ctxs):  # a perfect network: every send arrives within a tick
            for s in c.take_sent():
                ctxs[s.dst].now = now
                ctxs[s.dst].deliver(nodes[s.dst], i, s.msg)  # type: ignore[arg-type]
    assert [n.role for n in nodes].count(LEADER) == 1 and nodes[0].role == LEADER
    assert all(c.storage["log"][0][2] == 2 for c in ctxs)  # the leader's no-op everywhere
    assert all(n.commit >= 1 for n in nodes)
    rows = [(o.time, i, o.name, o.value, o.peer, o.ref)
            for i, c in enumerate(ctxs) for o in c.observations]
    log = {k: [] for k in ("time", "kind", "node", "name", "value", "peer", "msg_id")}
    for t, i, name, value, peer, ref in sorted(rows):
        for k, v in zip(log, (t, "obs", i, name, float(value), peer, ref), strict=True):
            log[k].append(v)
    import numpy as np

    cols = {k: np.array(v, dtype=object if k in ("kind", "name") else None) for k, v in log.items()}
    assert Raft.safety(params, cols) == [] and len(ck.rows_of(cols, "commit")) >= 3


def test_swim_recovers_with_a_higher_incarnation_through_fake_context() -> None:
    params = SwimParams()
    ctx = FakeContext(2, 6)
    s = Swim(params, 2)
    s.on_start(ctx)  # type: ignore[arg-type]
    assert s.inc == 0
    s = ctx.crash_and_recover(Swim, params)  # type: ignore[assignment]
    assert s.inc == 1 and s.queue[2][:2] == (0, 1)  # alive, incarnation 1, to be gossiped
