"""Byzantine variants of Bracha's broadcast (:mod:`raysim.protocols.byzantine.bracha`).

``Equivocator``: a Byzantine node that takes part in every step, at once, but tells nodes
of even id ``value`` and nodes of odd id ``value + 1`` (if it is the sender, its initial
message already splits the honest nodes in two camps). With at most ``(n - 1) // 3`` such
nodes neither camp reaches an echo quorum for the other's value, so nobody delivers a
wrong value; with ``n / 3`` of them both camps do, and agreement breaks.

``Silent``: a Byzantine node that never echoes or readies (the selectively silent node of
the fault model, protocol-aware).
"""

from __future__ import annotations

from typing import Any

from raysim.api.protocol import Context
from raysim.protocols.byzantine.bracha import Bracha, Echo, Initial, Ready


class Equivocator(Bracha):
    """Sends ``v`` to even nodes and ``v + 1`` to odd nodes, in every phase, right away."""

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)
        ctx.emit("byzantine")

    def broadcast(self, ctx: Context, kind: type, value: int) -> None:
        """Equivocate: a different value to each half (by node id parity)."""
        v = self.p.value
        for dst in range(self.n):
            ctx.send(dst, kind(v + (dst % 2)))

    def on_timer(self, ctx: Context, tag: Any) -> None:
        self.broadcast(ctx, Initial, self.p.value)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        # Join every phase on the first message it sees, for both camps at once.
        if not self.echoed:
            self.echoed = self.readied = True
            self.broadcast(ctx, Echo, self.p.value)
            self.broadcast(ctx, Ready, self.p.value)


class Silent(Bracha):
    """Never echoes or readies (it still sends its initial message if it is the sender)."""

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)
        ctx.emit("byzantine")

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        return
