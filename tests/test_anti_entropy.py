"""Anti-entropy over CRDTs: exchanges through a fake context, convergence on a fake network,
the negative example, and the checks on hand-made logs."""

from __future__ import annotations

import pytest

from raysim.protocols.replication import anti_entropy as ae
from raysim.protocols.replication import workload as wl
from raysim.protocols.replication.checks import columns
from raysim.values.versions import VersionVector
from tests.replication_fake import FakeContext, FakeNet

CORRECT = [c for c in wl.CRDTS if c != "arrival_register"]


def make(node: int, **kw: object) -> tuple[ae.AntiEntropy, FakeContext]:
    p = ae.AntiEntropyParams(**kw)  # type: ignore[arg-type]
    return ae.AntiEntropy(p, node), FakeContext(node, 4)


def test_push_pull_answers_with_the_merged_state() -> None:
    a, ca = make(0, crdt="g_counter", mode="push_pull")
    b, cb = make(1, crdt="g_counter", mode="push_pull")
    a._write(ca)
    b._write(cb)
    a.on_timer(ca, "exchange")
    msg = ca.sent[-1].msg
    b.on_message(cb, 0, msg)
    a.on_message(ca, 1, cb.sent[-1][1])
    assert a.state == b.state and a.vv == b.vv == VersionVector({0: 1, 1: 1})
    assert [ref for _, _, ref in ca.names("bytes")] == [1]  # the opening message


def test_digest_ships_only_the_missing_writes() -> None:
    a, ca = make(0, crdt="g_set", mode="digest")
    b, cb = make(1, crdt="g_set", mode="digest")
    for _ in range(3):
        a._write(ca)
    b._write(cb)
    b.on_message(cb, 0, ae.Digest(VersionVector({0: 2})))
    reply = cb.sent[-1][1]
    assert [(o, s) for o, s, _ in reply.deltas] == [(1, 1)] and reply.vv == b.vv
    a.on_message(ca, 1, reply)
    push = ca.sent[-1][1]
    assert [(o, s) for o, s, _ in push.deltas] == [(0, 1), (0, 2), (0, 3)] and push.vv is None
    b.on_message(cb, 0, push)
    assert a.state == b.state and b.vv.total() == 4
    b.on_message(cb, 0, push)  # a duplicate changes nothing
    assert b.vv.total() == 4


@pytest.mark.parametrize("crdt", CORRECT)
@pytest.mark.parametrize("mode", ["push", "pull", "push_pull", "digest"])
def test_every_crdt_converges_to_the_specified_value_under_loss(crdt: str, mode: str) -> None:
    p = ae.AntiEntropyParams(crdt=crdt, mode=mode, period=200, write_rate=40.0,  # type: ignore[arg-type]
                             write_until=3000)
    net = FakeNet([ae.AntiEntropy(p, i) for i in range(6)], loss=0.3, seed=2)
    net.start()
    net.run(30_000)
    ev = net.events()
    m = ae.convergence_metrics(p, ev, 6)
    assert m["writes"] > 30 and m["converged"] == 1.0 and m["matches_spec"] == 1.0
    assert ae.AntiEntropy.safety(p, ev) == []


def test_arrival_order_register_diverges_and_the_check_says_so() -> None:
    p = ae.AntiEntropyParams(crdt="arrival_register", mode="push_pull", period=200,
                             write_rate=40.0, write_until=3000)
    net = FakeNet([ae.AntiEntropy(p, i) for i in range(12)], loss=0.3, seed=2)
    net.start()
    net.run(30_000)
    ev = net.events()
    m = ae.convergence_metrics(p, ev, 12)
    # every replica knows every write, yet the values are not (all) the specified one
    assert m["matches_spec"] == 0.0
    found = {v.check for v in ae.AntiEntropy.safety(p, ev)}
    assert "wrong_value" in found
    assert (m["distinct_final"] > 1) == ("diverged_after_quiescence" in found)


def test_checks_on_hand_made_columns() -> None:
    p = ae.AntiEntropyParams(crdt="g_counter")
    h3 = wl.value_hash(3)
    ev = columns(time=[0, 1, 2, 3, 4, 5], kind=["obs"] * 6, node=[0, 0, 0, 1, 1, 1],
                 name=["write", "known", "state", "known", "state", "state"],
                 value=[3.0, 1.0, float(h3), 1.0, float(h3), float(wl.value_hash(4))])
    found = ae.AntiEntropy.safety(p, ev)
    assert [(v.check, v.nodes[0]) for v in found] == [("diverged_after_quiescence", 1),
                                                  ("wrong_value", 1)]
    ok = {k: v[:5] for k, v in ev.items()}
    assert ae.AntiEntropy.safety(p, ok) == []


def test_arrival_register_merge_is_not_commutative() -> None:
    x = wl.ArrivalRegister(1, VersionVector({0: 1}))
    y = wl.ArrivalRegister(2, VersionVector({1: 1}))
    assert x.merge(y).value == 2 and y.merge(x).value == 1
    assert x.merge(y).vv == y.merge(x).vv
