"""Vector clocks kept by the protocol itself (course Algorithm 6; Fidge 1988, Mattern 1989).

Theory of operation
-------------------
C. Fidge, "Timestamps in message-passing systems that preserve the partial ordering"
(ACSC 1988); F. Mattern, "Virtual time and global states of distributed systems" (1989);
Algorithm 6 of the course notes. Node ``i`` keeps one counter per node, ``VC``:

==========  ==========================================================================
event       rule
==========  ==========================================================================
local       ``VC[i] ← VC[i] + 1``
send        ``VC[i] ← VC[i] + 1``; the message carries a copy of ``VC``
receive     ``VC[j] ← max(VC[j], msg.VC[j])`` for every ``j``, then ``VC[i] ← VC[i] + 1``
==========  ==========================================================================

After each event the node emits ``vclock``, its whole vector (a sequence of ints, one per
node), with ``peer`` and ``ref`` as in :mod:`~raysim.protocols.causality.lamport`.
Vector clocks characterise causality exactly, a → b ⇔ VC(a) < VC(b):
:func:`raysim.analysis.check_clock_condition` checks both directions against the engine's
happens-before graph.

The vector has one entry per node (:class:`~raysim.values.clocks.DenseVectorClock`), so
this protocol is meant for a few to a few hundred nodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from raysim.api.protocol import Context, Violation, register
from raysim.protocols.causality import oracle
from raysim.protocols.causality.traffic import (
    SEND,
    ClockNode,
    TrafficParams,
    next_action,
    start_traffic,
)
from raysim.values.clocks import DenseVectorClock


class VectorStamped(NamedTuple):
    """An application message carrying the sender's vector clock."""

    vc: DenseVectorClock


@register("clocks.vector")
class VectorNode(ClockNode):
    """Vector clocks (Algorithm 6): tick own entry; on receive, element-wise max, then tick."""

    def __init__(self, params: TrafficParams, node: int) -> None:
        super().__init__(params, node)
        self.vc: DenseVectorClock | None = None

    @classmethod
    def safety(cls, params: TrafficParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``clock_condition`` (a → b ⇒ V(a) < V(b)), linear in the log; the converse
        (the strong condition) is pairwise and left to
        :func:`raysim.analysis.check_clock_condition`."""
        for time, nodes, detail in oracle.clock_safety(events, "vclock", "value_vec", True):
            yield Violation("clock_condition", time, nodes, detail)

    def _clock(self, ctx: Context) -> DenseVectorClock:
        if self.vc is None:
            self.vc = DenseVectorClock.zeros(ctx.n_nodes)
        return self.vc

    def on_start(self, ctx: Context) -> None:
        self.vc = DenseVectorClock.zeros(ctx.n_nodes)
        start_traffic(ctx, self.p)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        action, dst = next_action(ctx, self.p, tag)
        vc = self._clock(ctx)
        if action == SEND:
            self.vc, stamp = vc.send(self.node)
            mid = ctx.send(dst, VectorStamped(stamp))
            ctx.emit("vclock", self.vc.counts.tolist(), peer=dst, ref=mid)
        else:
            self.vc = vc.tick(self.node)
            ctx.emit("vclock", self.vc.counts.tolist())

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self.vc = self._clock(ctx).receive(self.node, msg.vc)
        ctx.emit("vclock", self.vc.counts.tolist(), peer=src, ref=ctx.cause)
