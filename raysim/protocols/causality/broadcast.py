"""Causal broadcast with version vectors (course Algorithm 3; Birman et al. 1991).

Theory of operation
-------------------
Each node broadcasts operations to every other node at exponentially distributed intervals
(mean ``interval`` ticks, until time ``until``). Following Algorithm 3 of the course notes,
the originator increments its own entry of its version vector ``vv``, attaches ``vv`` to the
operation and sends it to everyone (:func:`raysim.values.versions.broadcast`). A receiver
then follows one of two policies:

===========  =============================================================================
policy       on receiving operation ``op`` from ``src``
===========  =============================================================================
arrival      Algorithm 3 as written: ``vv[src] ← max(vv[src], op.vv[src])``; apply ``op``
causal       hold ``op`` back until it is causally ready (``op.vv[src] = vv[src] + 1`` and
             ``op.vv[r] ≤ vv[r]`` for every other ``r``: K. Birman, A. Schiper and P.
             Stephenson, "Lightweight causal and atomic group multicast", ACM TOCS 9(3),
             1991); then apply it, and every held operation that has become ready
===========  =============================================================================

Under a network that reorders messages (``network.jitter``) the first policy applies some
operations before operations they causally depend on; the second never does.

Observations: ``broadcast`` at the originator (value: the operation's sequence number
``vv[src]``), emitted before its sends; ``apply`` at each receiver when it applies an
operation (value: the sequence number, ``peer``: the originator, ``ref``: the id of the
message that carried it); ``held`` (value: the hold-back queue's length) when an operation
is held back. The oracle, :func:`raysim.analysis.causal_order_violations`, rebuilds the
happens-before relation of broadcasts and applications from the log alone (program order,
and an edge from each send to the application of what it carried) and counts the
applications that came before one of their causal predecessors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, Violation, register
from raysim.protocols.causality import oracle
from raysim.values.versions import (
    Operation,
    VersionVector,
    broadcast,
    is_causally_ready,
    is_delivered,
    receive,
)

NEXT = "broadcast"


class Op(NamedTuple):
    """An operation on the wire: the originator's operation with its version vector."""

    op: Operation[int]


class BroadcastParams(Params):
    """Parameters of causal broadcast."""

    policy: Literal["arrival", "causal"] = Field(
        "causal", description="apply on arrival (Algorithm 3), or hold back until causally ready"
    )
    interval: float = Field(200.0, gt=0, description="mean ticks between a node's broadcasts")
    until: int = Field(2000, ge=0, description="no new broadcasts from this time on")


@register("causal.broadcast")
@register("causal.broadcast.arrival", presets={"policy": "arrival"})
@register("causal.broadcast.causal", presets={"policy": "causal"})
class CausalBroadcast(Protocol):
    """Broadcast of operations tagged with version vectors; apply on arrival or causally."""

    Params: ClassVar[type[BroadcastParams]] = BroadcastParams
    milestones: ClassVar[tuple[str, ...]] = ()
    checks: ClassVar[tuple[str, ...]] = ("causal_order",)
    report: ClassVar[str | None] = "raysim.analysis.causality_report:report_parts"

    def __init__(self, params: BroadcastParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.vv = VersionVector()
        self.held: list[tuple[int, Operation[int]]] = []  # (message id, op), arrival order

    @classmethod
    def metrics(cls, params: BroadcastParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages sent per node."""
        return {"messages_per_node": stats["sent"] / stats["nodes"]}

    @classmethod
    def safety(cls, params: BroadcastParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``causal_order``: every application of an operation before one it causally
        depends on (:func:`~raysim.protocols.causality.oracle.causal_order_violations`)."""
        for node, time, src, seq, missing in oracle.causal_order_violations(events):
            yield Violation("causal_order", time, (node, src),
                            f"node {node} applied operation {src}:{seq} before {missing} "
                            "operation(s) it causally depends on")

    def on_start(self, ctx: Context) -> None:
        self.vv = VersionVector()
        self.held = []
        self._schedule(ctx)

    def _schedule(self, ctx: Context) -> None:
        gap = 1 + int(-math.log(1.0 - ctx.rng.random()) * self.p.interval)
        if ctx.now + gap < self.p.until:
            ctx.set_timer(gap, NEXT)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        self._schedule(ctx)
        self.vv, op = broadcast(self.vv, self.node, self.vv.total())
        ctx.emit("broadcast", op.seq)
        msg = Op(op)
        for peer in ctx.peers:
            ctx.send(peer, msg)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        op: Operation[int] = msg.op
        mid = ctx.cause
        if self.p.policy == "arrival":
            self._apply(ctx, mid, op)
            return
        if is_delivered(self.vv, op):
            return  # a duplicate
        self.held.append((mid, op))
        self._drain(ctx)
        if self.held:
            ctx.emit("held", len(self.held))

    def _drain(self, ctx: Context) -> None:
        progress = True
        while progress:
            progress = False
            for i, (mid, op) in enumerate(self.held):
                if is_causally_ready(self.vv, op):
                    del self.held[i]
                    self._apply(ctx, mid, op)
                    progress = True
                    break

    def _apply(self, ctx: Context, mid: int, op: Operation[int]) -> None:
        self.vv = receive(self.vv, op)
        ctx.emit("apply", op.seq, peer=int(op.src), ref=mid)
