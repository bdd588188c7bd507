"""A tiny in-test network over :class:`raysim.testing.FakeContext`, for the replication family.

:class:`FakeNet` runs several protocol instances against each other with a seeded delay and
loss, so a unit test can watch retransmission, convergence and recovery without the engine.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Any

import numpy as np

from raysim.testing import FakeContext as BaseFakeContext


class FakeContext(BaseFakeContext):
    """:class:`raysim.testing.FakeContext` with two read helpers for these tests."""

    def live_timers(self) -> list[tuple[int, int, Hashable]]:
        """Pending (time, id, tag), earliest first."""
        return [(t.when, t.id, t.tag) for t in self.pending()]

    def names(self, name: str) -> list[tuple[Any, int, int]]:
        """(value, peer, ref) of every observation called ``name``."""
        return [(o.value, o.peer, o.ref) for o in self.observations if o.name == name]

    def pairs(self) -> list[tuple[int, object]]:
        """(destination, message) of every send."""
        return [(m.dst, m.msg) for m in self.sent]


class FakeNet:
    """Runs protocol instances with a delay in ``[low, high]`` and independent loss;
    ``seed`` drives the network, ``ctx_seed`` the nodes' ``ctx.rng``."""

    def __init__(self, protos: list[Any], loss: float = 0.0, low: int = 20, high: int = 100,
                 seed: int = 0, ctx_seed: int = 0) -> None:
        self.protos = protos
        self.ctxs = [FakeContext(i, len(protos), seed=ctx_seed) for i in range(len(protos))]
        self.loss, self.low, self.high = loss, low, high
        self.rng = np.random.default_rng(seed)
        self.queue: list[tuple[int, int, int, int, object]] = []  # time, order, dst, src, msg
        self.order = 0
        self.down: set[int] = set()
        self.rows: list[tuple[int, str, int, int, int, str, float]] = []
        self._seen = [0] * len(protos)
        self._sent = [0] * len(protos)

    def _collect(self, i: int) -> None:
        ctx = self.ctxs[i]
        for o in ctx.observations[self._seen[i]:]:
            self.rows.append((ctx.now, "obs", i, o.peer, o.ref, o.name, float(o.value)))
        self._seen[i] = len(ctx.observations)
        for dst, msg in ctx.pairs()[self._sent[i]:]:
            if self.rng.random() >= self.loss:
                t = ctx.now + int(self.rng.integers(self.low, self.high + 1))
                self.order += 1
                heapq.heappush(self.queue, (t, self.order, dst, i, msg))
        self._sent[i] = len(ctx.sent)

    def start(self) -> None:
        for i, p in enumerate(self.protos):
            p.on_start(self.ctxs[i])
            self._collect(i)

    def crash(self, i: int) -> None:
        self.down.add(i)
        for t in self.ctxs[i].timers.values():
            t.cancelled = True
        self.rows.append((self.ctxs[i].now, "crash", i, -1, -1, "", float("nan")))

    def recover(self, i: int, proto: Any) -> None:
        self.down.discard(i)
        self.protos[i] = proto
        self.rows.append((self.ctxs[i].now, "recover", i, -1, -1, "", float("nan")))
        proto.on_recover(self.ctxs[i])
        self._collect(i)

    def run(self, until: int) -> None:
        """Deliver messages and fire timers in time order up to ``until``."""
        while True:
            nxt_msg = self.queue[0][0] if self.queue else None
            timers = [(t, i, tid, tag) for i, c in enumerate(self.ctxs) if i not in self.down
                      for t, tid, tag in c.live_timers()]
            nxt_timer = min(timers) if timers else None
            cands = [x for x in (nxt_msg, nxt_timer[0] if nxt_timer else None) if x is not None]
            if not cands or min(cands) > until:
                break
            if nxt_timer is not None and (nxt_msg is None or nxt_timer[0] <= nxt_msg):
                t, i, tid, tag = nxt_timer
                self.ctxs[i].timers[tid].fired = True
                self.ctxs[i].now, self.ctxs[i].cause = t, tid
                self.protos[i].on_timer(self.ctxs[i], tag)
                self._collect(i)
            else:
                t, _, dst, src, msg = heapq.heappop(self.queue)
                if dst in self.down:
                    continue
                self.ctxs[dst].now = t
                self.protos[dst].on_message(self.ctxs[dst], src, msg)
                self._collect(dst)
        for c in self.ctxs:
            c.now = max(c.now, until)

    def events(self) -> dict[str, np.ndarray]:
        """The rows so far as log columns (observations, crashes, recoveries)."""
        cols = list(zip(*self.rows, strict=True)) if self.rows else [[]] * 7
        names = ("time", "kind", "node", "peer", "msg_id", "name", "value")
        out = {n: np.asarray(c) for n, c in zip(names, cols, strict=True)}
        order = np.lexsort((np.arange(len(out["time"])), out["time"]))
        return {k: v[order] for k, v in out.items()}
