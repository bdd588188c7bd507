"""Byzantine variants of anti-entropy (:mod:`raysim.protocols.replication.anti_entropy`).

An *equivocator* takes part in anti-entropy like an honest replica but tells different peers
different stories about its own writes: for each write it makes (logged once, as an honest
write) it keeps a twin write under the same origin and sequence number, and ships the twin to
the peers with odd ids, the real one to the others — in full states and in digests alike.
The twin of a set or counter write is a different element or amount (drawn from a second
random stream; set elements are moved out of the honest universe, so a forged one is plain
to see); the twin of a register write is another value, one tick later.

What breaks depends on the exchange (course: "Byzantine Failures"; CRDTs assume every
replica applies the same update under one identity):

* ``digest``: version vectors name a write by (origin, sequence number). An odd and an even
  replica both hold "write 3 of the equivocator", so their vectors are equal, nothing is
  shipped, and they never converge (``diverged_after_quiescence``).
* full states (``push``, ``pull``, ``push_pull``): the join merges both stories, so the
  replicas converge — on a value that holds writes nobody made (``wrong_value`` against
  the sequential specification of the logged writes): a forged update accepted.

Majorities do not help: every honest replica merges what it is sent, and one equivocator is
enough. The equivocator emits ``byzantine`` at start, so the checks and the analysis leave
it out of the honest replicas.
"""

from __future__ import annotations

from typing import Any

from raysim.api.protocol import Context
from raysim.protocols.replication import workload as wl
from raysim.protocols.replication.anti_entropy import AntiEntropy, AntiEntropyParams, Deltas
from raysim.values.rng import NodeRng, derive
from raysim.values.versions import VersionVector

TWIN_OFFSET = 500_000  # register twins: value + this (honest values are node * 10**6 + count)


class Equivocator(AntiEntropy):
    """A replica that ships one version of each of its writes to even peers, another to odd."""

    def __init__(self, params: AntiEntropyParams, node: int) -> None:
        super().__init__(params, node)
        self.twin: Any = wl.empty(params.crdt)  # the state odd peers are told
        self.twin_deltas: list[Any] = []
        self.twin_rng: NodeRng | None = None
        self._dst = 0

    def on_start(self, ctx: Context) -> None:
        ctx.emit("byzantine")  # so the checks and the analysis know who is honest
        self.twin_rng = NodeRng(derive(ctx.seed, self.node, 1))  # a stream of its own
        super().on_start(ctx)

    def _lie_to(self, dst: int) -> bool:
        return dst % 2 == 1

    def _write(self, ctx: Context) -> None:
        super()._write(ctx)
        assert self.twin_rng is not None
        crdt = self.p.crdt
        if crdt in ("lww_register", "mv_register", "arrival_register"):
            value = self.node * 10**6 + self.writes + TWIN_OFFSET
            if crdt == "lww_register":
                delta: Any = self.twin.assign(value, ctx.now + 1, self.node)
            elif crdt == "mv_register":
                delta = self.twin.assign(value, self.node)
            else:
                delta = wl.ArrivalRegister(value, self.twin.vv.increment(self.node))
        else:
            _, delta, _ = wl.write(crdt, self.twin, self.node, ctx.now, self.writes,
                                   self.twin_rng)
            if crdt == "g_set":
                delta = type(delta)(frozenset(e + wl.SET_UNIVERSE for e in delta.value))
        self.twin = self.twin.merge(delta)
        self.twin_deltas.append(delta)

    def _send_state(self, ctx: Context, dst: int, reply: bool, first: bool = False) -> None:
        if not self._lie_to(dst):
            super()._send_state(ctx, dst, reply, first)
            return
        honest = self.state
        self.state = honest.merge(self.twin)  # what odd peers are told: the twins too
        try:
            super()._send_state(ctx, dst, reply, first)
        finally:
            self.state = honest

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self._dst = src
        super().on_message(ctx, src, msg)

    def _missing(self, vv: VersionVector, ask: bool) -> tuple[Deltas, int]:
        if not self._lie_to(self._dst) or self.node not in self.deltas:
            return super()._missing(vv, ask)
        mine = self.deltas[self.node]
        self.deltas[self.node] = self.twin_deltas
        try:
            return super()._missing(vv, ask)
        finally:
            self.deltas[self.node] = mine
