"""Protocols are sans-IO: handlers are tested by calling them with a fake context."""

from __future__ import annotations

from typing import Any

import pytest

from raysim.protocols import available, lookup
from raysim.protocols.gossip.dissemination import (
    Exchange,
    ExchangeReply,
    Gossip,
    GossipParams,
    PullRequest,
    Rumor,
)
from raysim.testing import FakeContext


def make(mode: str, node: int, **kw: Any) -> tuple[Gossip, FakeContext]:
    return Gossip(GossipParams(mode=mode, **kw), node), FakeContext(node, n_nodes=10)


def test_source_is_informed_at_start_and_schedules_a_round() -> None:
    g, ctx = make("push", 0, phase="lockstep", period=500)
    g.on_start(ctx)
    assert ctx.emitted() == [1.0] and ctx.observations[0].name == "informed"
    assert [(t.when, t.tag) for t in ctx.pending()] == [(500, "round")]
    g2, ctx2 = make("push", 3)
    g2.on_start(ctx2)
    assert ctx2.emitted() == []
    assert 1 <= ctx2.pending()[0].when <= 1000


def test_push_only_informed_nodes_send() -> None:
    g, ctx = make("push", 4, fanout=3)
    g.on_timer(ctx, "round")
    assert ctx.sent == []
    g.on_message(ctx, 1, Rumor())
    g.on_timer(ctx, "round")
    assert [type(s.msg) for s in ctx.sent] == [Rumor] * 3
    assert len({s.dst for s in ctx.sent}) == 3 and 4 not in {s.dst for s in ctx.sent}


def test_pull_asks_until_informed_and_answers_once_informed() -> None:
    g, ctx = make("pull", 2)
    g.on_timer(ctx, "round")
    assert [type(s.msg) for s in ctx.sent] == [PullRequest]
    g.on_message(ctx, 5, PullRequest())
    assert len(ctx.sent) == 1  # uninformed nodes have nothing to answer
    g.on_message(ctx, 7, Rumor())
    g.on_message(ctx, 5, PullRequest())
    assert ctx.sent[-1][:2] == (5, Rumor())
    ctx.sent.clear()
    g.on_timer(ctx, "round")
    assert ctx.sent == []


def test_push_pull_exchanges_state_both_ways() -> None:
    g, ctx = make("push_pull", 1)
    g.on_message(ctx, 6, Exchange(informed=True))
    assert g.informed and [s[:2] for s in ctx.sent] == [(6, ExchangeReply(informed=True))]
    h, ctx2 = make("push_pull", 2)
    h.on_timer(ctx2, "round")
    assert type(ctx2.sent[0].msg) is Exchange and ctx2.sent[0].msg.informed is False
    h.on_message(ctx2, 1, ExchangeReply(informed=True))
    assert h.informed and ctx2.emitted("informed") == [1.0]


def test_learning_twice_emits_once() -> None:
    g, ctx = make("push", 3)
    g.on_message(ctx, 1, Rumor())
    g.on_message(ctx, 2, Rumor())
    assert ctx.emitted("informed") == [1.0] and len(ctx.observations) == 1


def test_registry_lists_every_builtin_and_rejects_unknown_names() -> None:
    names = {s.name for s in available()}
    assert {
        "gossip",
        "gossip.push",
        "gossip.pull",
        "gossip.push_pull",
        "gossip.average",
        "gossip.average.reference",
    } <= names
    assert lookup("gossip.pull").make_params({}).mode == "pull"  # type: ignore[attr-defined]
    with pytest.raises(KeyError, match="unknown protocol"):
        lookup("gossip.shout")
