"""A tiny deterministic driver for per-node protocols, for unit tests without the engine.

It follows the engine's log contract (``seq`` in program order, ``cause`` on sends, message
ids ``src << 32 | n``, ``ctx.cause``) closely enough to test protocols and the analysis
together; the engine itself is tested against the same analysis in ``test_causality_runs``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import pandas as pd

from raysim.api.protocol import Protocol
from raysim.values.rng import NodeRng


class SimContext:
    """The per-node context of :func:`simulate`."""

    def __init__(self, sim: _Sim, node: int) -> None:
        self.sim, self.node = sim, node
        self.n_nodes = sim.n
        self.now = 0
        self.cause = -1
        self.rng = NodeRng(1000 + node)
        self.storage: dict[str, Any] = {}
        self._sent = 0
        self._timers = 0

    def send(self, dst: int, msg: object) -> int:
        mid = (self.node << 32) | self._sent
        self._sent += 1
        self.sim.row(self.node, "send", peer=dst, msg_id=mid, msg_type=type(msg).__name__)
        self.sim.push(self.now + self.sim.delay(self.node, dst, mid), 1, "deliver", dst,
                      (self.node, mid, msg))
        return mid

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        tid = self._timers
        self._timers += 1
        self.sim.push(self.now + delay, 2, "timer", self.node, (tid, tag))
        return tid

    def cancel_timer(self, timer_id: int) -> None:
        raise NotImplementedError

    def emit(self, name: str, value: Any = 1.0, peer: int = -1, ref: int = -1) -> None:
        self.sim.row(self.node, "obs", peer=peer, msg_id=ref, name=name, value=value)

    @property
    def peers(self) -> Sequence[int]:
        return [p for p in range(self.n_nodes) if p != self.node]

    def random_peer(self) -> int:
        return self.rng.choice(self.peers)


class _Sim:
    def __init__(self, n: int, delay: Callable[[int, int, int], int]) -> None:
        self.n, self.delay = n, delay
        self.heap: list[tuple[int, int, int, int, str, Any]] = []
        self.count = 0
        self.rows: list[dict[str, Any]] = []
        self.seq = [0] * n
        self.handling = [-1] * n
        self.now = 0

    def push(self, when: int, prio: int, kind: str, node: int, payload: Any) -> None:
        heapq.heappush(self.heap, (when, prio, node, self.count, kind, payload))
        self.count += 1

    def row(self, node: int, kind: str, **kw: Any) -> None:
        row = dict(time=self.now, kind=kind, node=node, peer=-1, msg_id=-1, msg_type=None,
                   name=None, value=None, seq=self.seq[node],
                   cause=self.handling[node] if kind == "send" else -1)
        row.update(kw)
        self.rows.append(row)
        self.seq[node] += 1


def simulate(
    make: Callable[[int], Protocol],
    n: int,
    until: int,
    delay: Callable[[int, int, int], int] = lambda src, dst, mid: 5,
) -> pd.DataFrame:
    """Run ``n`` nodes made by ``make(node)`` until virtual time ``until``; the event log."""
    sim = _Sim(n, delay)
    nodes = [make(i) for i in range(n)]
    ctxs = [SimContext(sim, i) for i in range(n)]
    for i in range(n):
        sim.handling[i] = sim.seq[i]
        sim.row(i, "start")
        nodes[i].on_start(ctxs[i])
    while sim.heap and sim.heap[0][0] < until:
        when, _, node, _, kind, payload = heapq.heappop(sim.heap)
        sim.now = ctx_now = when
        ctx = ctxs[node]
        ctx.now = ctx_now
        sim.handling[node] = sim.seq[node]
        if kind == "deliver":
            src, mid, msg = payload
            sim.row(node, "deliver", peer=src, msg_id=mid, msg_type=type(msg).__name__)
            ctx.cause = mid
            nodes[node].on_message(ctx, src, msg)
        else:
            tid, tag = payload
            sim.row(node, "timer", msg_id=tid, msg_type=str(tag))
            ctx.cause = tid
            nodes[node].on_timer(ctx, tag)
    return pd.DataFrame(sim.rows)
