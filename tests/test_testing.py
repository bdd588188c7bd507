"""raysim.testing: fake contexts that behave like the engine where a protocol can tell."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from raysim.api.protocol import Context, Protocol
from raysim.protocols.gossip.averaging import AveragingColumns, AveragingParams
from raysim.protocols.gossip.dissemination import GossipColumns, GossipParams
from raysim.testing import FakeBatchContext, FakeContext


class Echo(Protocol):
    """Answers every message, re-arms a timer, remembers a cause."""

    def on_start(self, ctx: Context) -> None:
        self.first = ctx.set_timer(10, "a")
        self.second = ctx.set_timer(5, "b")
        self.fired: list[tuple[int, Any, int]] = []

    def on_timer(self, ctx: Context, tag: Any) -> None:
        self.fired.append((ctx.now, tag, ctx.cause))
        if tag == "b":
            ctx.set_timer(2, "c")  # fires at 7, before "a"

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        ctx.emit("seen", int(msg), peer=src, ref=ctx.cause)
        ctx.send(src, msg)


def test_sends_return_engine_style_message_ids() -> None:
    ctx = FakeContext(node=3, n_nodes=5)
    assert [ctx.send(1, "x"), ctx.send(4, "y")] == [3 << 32, (3 << 32) | 1]
    assert [(s.dst, s.msg, s.msg_id) for s in ctx.take_sent()] == [(1, "x", 3 << 32),
                                                                    (4, "y", (3 << 32) | 1)]
    assert ctx.sent == []
    with pytest.raises(ValueError, match="not a node id"):
        ctx.send(5, "z")


def test_timers_fire_in_time_order_with_their_ids_as_cause_and_cancel_works() -> None:
    p, ctx = Echo(None, 0), FakeContext(0, 3)
    p.on_start(ctx)
    assert (p.first, p.second) == (0, 1)
    assert ctx.fire_timers(p, until=8) == 2
    assert p.fired == [(5, "b", 1), (7, "c", 2)] and ctx.now == 8 and ctx.cause == -1
    ctx.cancel_timer(p.first)
    ctx.cancel_timer(99)  # unknown: ignored, as in the engine
    assert ctx.fire_timers(p, until=100) == 0 and ctx.pending() == []


def test_deliver_sets_the_cause_for_the_handler_only() -> None:
    p, ctx = Echo(None, 1), FakeContext(1, 3)
    ctx.deliver(p, src=2, msg=5, msg_id=(2 << 32) | 9)
    assert ctx.observations[0][:4] == ("seen", 5, 2, (2 << 32) | 9)
    assert ctx.cause == -1 and ctx.sent[0][:2] == (2, 5)


@pytest.mark.parametrize(("value", "stored"), [
    (True, True), (3, 3), (np.int64(4), 4), (2.5, 2.5), (np.float32(0.5), 0.5),
    ("ok", "ok"), ([1, 2, 3], (1, 2, 3)), (np.array([4, 5]), (4, 5)), (np.bool_(False), False),
])
def test_emit_accepts_the_typed_values(value: Any, stored: Any) -> None:
    ctx = FakeContext(0, 2)
    ctx.emit("x", value)
    got = ctx.observations[0].value
    assert got == stored and type(got) is type(stored)


@pytest.mark.parametrize(("args", "error"), [
    (("x", {"a": 1}), TypeError), (("x", [1.5]), TypeError), (("x", "s" * 257), ValueError),
    (("", 1), TypeError), (("x", 1, True), TypeError), (("x", 1, -1, "r"), TypeError),
    (("x", 2**64), ValueError), (("x", float("nan")), ValueError),
    (("x", np.zeros((2, 2), dtype=int)), TypeError), (("x", np.array([0.5])), TypeError),
])
def test_emit_rejects_what_the_engine_rejects(args: tuple[Any, ...], error: type) -> None:
    with pytest.raises(error):
        FakeContext(0, 2).emit(*args)


def test_rng_is_a_real_seeded_stream_and_random_peer_never_returns_the_node() -> None:
    a, b = FakeContext(2, 5, seed=9), FakeContext(2, 5, seed=9)
    draws = [a.random_peer() for _ in range(200)]
    assert draws == [b.random_peer() for _ in range(200)]
    assert set(draws) == {0, 1, 3, 4}
    assert FakeContext(2, 5, seed=10).rng.random() != FakeContext(2, 5, seed=9).rng.random()
    ring = FakeContext(0, 10, peers=[4, 6])
    assert {ring.random_peer() for _ in range(50)} == {4, 6} and ring.peers == [4, 6]


def test_storage_survives_crash_and_recover() -> None:
    class Counter(Protocol):
        def on_start(self, ctx: Context) -> None:
            ctx.storage["starts"] = ctx.storage.get("starts", 0) + 1

    ctx = FakeContext(0, 2)
    Counter(None, 0).on_start(ctx)
    ctx.crash_and_recover(Counter, None)
    assert ctx.storage == {"starts": 2}


def test_the_batch_fake_drives_columnar_gossip() -> None:
    proto = GossipColumns(GossipParams(mode="push", fanout=2, phase="lockstep", period=100),
                          0, 8)
    ctx = FakeBatchContext.for_protocol(proto, n_nodes=8)
    nodes = np.arange(8)
    proto.on_start(ctx, ctx.events(nodes, 0))
    assert ctx.emitted("informed") == [(0, 1.0)]
    (timers,) = ctx.timers
    assert timers["when"].tolist() == [100] * 8 and timers["id"].tolist() == [0] * 8
    proto.on_timer(ctx, ctx.events(nodes, 100, tags=["round"] * 8))
    (sent,) = ctx.sent
    assert sent["src"].tolist() == [0, 0] and len(set(sent["dst"].tolist())) == 2
    assert sent["msg_id"].tolist() == [0, 1] and 0 not in sent["dst"].tolist()
    dst = sent["dst"]
    proto.on_message(ctx, ctx.events(dst, 150, src=[0, 0], mtype=[0, 0]))
    assert sorted(n for n, _ in ctx.emitted("informed")) == sorted([0, *dst.tolist()])


def test_the_batch_fake_checks_fields_and_distinct_nodes() -> None:
    proto = AveragingColumns(AveragingParams(), 0, 4)
    ctx = FakeBatchContext.for_protocol(proto, n_nodes=4)
    with pytest.raises(ValueError, match="unknown message field"):
        ctx.send([0], 0, [1], 0, weight=1.0)
    with pytest.raises(ValueError, match="distinct"):
        ctx.random([1, 1])
    draws = ctx.random(np.arange(4))
    assert ((draws >= 0) & (draws < 1)).all() and len(set(draws.tolist())) == 4


def test_importing_the_fakes_loads_neither_ray_pyarrow_pandas_nor_the_engine() -> None:
    code = ("import sys, raysim.testing; bad = [m for m in ('ray', 'pyarrow', 'pandas', "
            "'raysim.engine', 'raysim.log') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
