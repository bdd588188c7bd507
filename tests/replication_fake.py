"""A small fake per-node context and a tiny in-test network for the replication family.

NOTE: stands in until ``raysim.testing.FakeContext`` lands; it records sends (returning
message ids), timers (returning ids, honouring cancels) and observations with peer and ref.
:class:`FakeNet` runs several protocol instances against each other with a seeded loss, so a
unit test can watch retransmission and recovery without the engine.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from raysim.values.rng import NodeRng


class FakeContext:
    """Records what a handler does; ``now`` is set by the test (or by :class:`FakeNet`)."""

    def __init__(self, node: int, n_nodes: int = 4, now: int = 0) -> None:
        self.node, self.n_nodes, self.now = node, n_nodes, now
        self.sent: list[tuple[int, object]] = []
        self.timers: dict[int, tuple[int, Hashable]] = {}  # id -> (absolute time, tag)
        self.cancelled: set[int] = set()
        self.emitted: list[tuple[str, float, int, int]] = []
        self.rng = NodeRng(node)
        self.storage: dict[str, Any] = {}
        self._ids = 0

    def send(self, dst: int, msg: object) -> int:
        self.sent.append((dst, msg))
        return self.node << 32 | (len(self.sent) - 1)

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        assert delay >= 0
        self._ids += 1
        self.timers[self._ids] = (self.now + delay, tag)
        return self._ids

    def cancel_timer(self, timer_id: int) -> None:
        self.cancelled.add(timer_id)

    def emit(self, name: str, value: float = 1.0, peer: int = -1, ref: int = -1) -> None:
        self.emitted.append((name, value, peer, ref))

    def live_timers(self) -> list[tuple[int, int, Hashable]]:
        """Pending (time, id, tag), earliest first."""
        return sorted((t, i, tag) for i, (t, tag) in self.timers.items()
                      if i not in self.cancelled)

    def names(self, name: str) -> list[tuple[float, int, int]]:
        """(value, peer, ref) of every observation called ``name``."""
        return [(v, p, r) for n, v, p, r in self.emitted if n == name]

    @property
    def peers(self) -> Sequence[int]:
        return [p for p in range(self.n_nodes) if p != self.node]

    def random_peer(self) -> int:
        return self.rng.choice(self.peers)


class FakeNet:
    """Runs protocol instances with a delay in ``[low, high]`` and independent loss."""

    def __init__(self, protos: list[Any], loss: float = 0.0, low: int = 20, high: int = 100,
                 seed: int = 0) -> None:
        self.protos = protos
        self.ctxs = [FakeContext(i, len(protos)) for i in range(len(protos))]
        self.loss, self.low, self.high = loss, low, high
        self.rng = np.random.default_rng(seed)
        self.queue: list[tuple[int, int, int, int, object]] = []  # time, order, dst, src, msg
        self.order = 0
        self.fired: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.rows: list[tuple[int, str, int, int, int, str, float]] = []
        self._seen = [0] * len(protos)
        self._sent = [0] * len(protos)

    def _collect(self, i: int) -> None:
        ctx = self.ctxs[i]
        for name, v, p, r in ctx.emitted[self._seen[i]:]:
            self.rows.append((ctx.now, "obs", i, p, r, name, float(v)))
        self._seen[i] = len(ctx.emitted)
        for dst, msg in ctx.sent[self._sent[i]:]:
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
        self.ctxs[i].cancelled |= set(self.ctxs[i].timers)
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
                      for t, tid, tag in c.live_timers() if (i, tid) not in self.fired]
            nxt_timer = min(timers) if timers else None
            cands = [x for x in (nxt_msg, nxt_timer[0] if nxt_timer else None) if x is not None]
            if not cands or min(cands) > until:
                break
            if nxt_timer is not None and (nxt_msg is None or nxt_timer[0] <= nxt_msg):
                t, i, tid, tag = nxt_timer
                self.fired.add((i, tid))
                self.ctxs[i].cancelled.add(tid)
                self.ctxs[i].now = t
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
