"""Protocols are sans-IO: handlers are tested by calling them with a fake context."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
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
from raysim.values.rng import NodeRng


class FakeContext:
    """Records what a handler does; no engine involved."""

    def __init__(self, node: int, n_nodes: int = 10, now: int = 0) -> None:
        self.node, self.n_nodes, self.now = node, n_nodes, now
        self.sent: list[tuple[int, object]] = []
        self.timers: list[tuple[int, Hashable]] = []
        self.emitted: list[tuple[str, float]] = []
        self.rng = NodeRng(node)
        self.storage: dict[str, Any] = {}

    def send(self, dst: int, msg: object) -> None:
        self.sent.append((dst, msg))

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        self.timers.append((delay, tag))
        return len(self.timers)

    def cancel_timer(self, timer_id: int) -> None:
        pass

    def emit(self, name: str, value: float = 1.0) -> None:
        self.emitted.append((name, value))

    @property
    def peers(self) -> Sequence[int]:
        return [p for p in range(self.n_nodes) if p != self.node]

    def random_peer(self) -> int:
        return self.rng.choice(self.peers)


def make(mode: str, node: int, **kw: Any) -> tuple[Gossip, FakeContext]:
    return Gossip(GossipParams(mode=mode, **kw), node), FakeContext(node)


def test_source_is_informed_at_start_and_schedules_a_round() -> None:
    g, ctx = make("push", 0, phase="lockstep", period=500)
    g.on_start(ctx)
    assert ctx.emitted == [("informed", 1.0)]
    assert ctx.timers == [(500, "round")]
    g2, ctx2 = make("push", 3)
    g2.on_start(ctx2)
    assert ctx2.emitted == []
    assert 1 <= ctx2.timers[0][0] <= 1000


def test_push_only_informed_nodes_send() -> None:
    g, ctx = make("push", 4, fanout=3)
    g.on_timer(ctx, "round")
    assert ctx.sent == []
    g.on_message(ctx, 1, Rumor())
    g.on_timer(ctx, "round")
    assert [type(m) for _, m in ctx.sent] == [Rumor] * 3
    assert len({d for d, _ in ctx.sent}) == 3 and 4 not in {d for d, _ in ctx.sent}


def test_pull_asks_until_informed_and_answers_once_informed() -> None:
    g, ctx = make("pull", 2)
    g.on_timer(ctx, "round")
    assert [type(m) for _, m in ctx.sent] == [PullRequest]
    g.on_message(ctx, 5, PullRequest())
    assert len(ctx.sent) == 1  # uninformed nodes have nothing to answer
    g.on_message(ctx, 7, Rumor())
    g.on_message(ctx, 5, PullRequest())
    assert ctx.sent[-1] == (5, Rumor())
    ctx.sent.clear()
    g.on_timer(ctx, "round")
    assert ctx.sent == []


def test_push_pull_exchanges_state_both_ways() -> None:
    g, ctx = make("push_pull", 1)
    g.on_message(ctx, 6, Exchange(informed=True))
    assert g.informed and ctx.sent == [(6, ExchangeReply(informed=True))]
    h, ctx2 = make("push_pull", 2)
    h.on_timer(ctx2, "round")
    assert type(ctx2.sent[0][1]) is Exchange and ctx2.sent[0][1].informed is False
    h.on_message(ctx2, 1, ExchangeReply(informed=True))
    assert h.informed and ctx2.emitted == [("informed", 1.0)]


def test_learning_twice_emits_once() -> None:
    g, ctx = make("push", 3)
    g.on_message(ctx, 1, Rumor())
    g.on_message(ctx, 2, Rumor())
    assert ctx.emitted == [("informed", 1.0)]


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
