"""Push-pull averaging: gossip-based aggregation of a mean.

Follows Jelasity, Montresor and Babaoglu, "Gossip-based aggregation in large dynamic
networks" (ACM TOCS 23(3), 2005), the workload PeerSim's cycle-driven examples made classic.
Every node holds a number. Once per ``period`` (at a random per-node phase, or in lock-step)
a node sends its value to one random neighbour, which answers with its own value; both then
keep the mean of the two. The sum is conserved by each completed exchange, so every value
converges to the global mean; the variance shrinks by a factor of about 1/(2·sqrt(e)) ≈ 0.30
per round over a complete graph.

Two implementations write the same event log: ``gossip.average`` keeps the values as one
numpy column per shard and handles events in batches (:class:`AveragingColumns`), and
``gossip.average.reference`` is the plain per-node state machine (:class:`Averaging`). The
test suite checks that they agree row for row.

Each node emits ``value`` (its current number) at the start of each of its rounds, so the
variance per round can be read from the log. The neighbourhood is the network topology:
``full`` membership, or a static ``random`` overlay of k neighbours per node.

Safety check (over the event log after every fully logged run, :meth:`Averaging.safety`):
``value_in_hull`` — every emitted ``value`` lies in [0, 1], the convex hull of the initial
values (uniform in [0, 1), or one 1 and zeros): a mean of two values never leaves their
hull, whatever the network loses, duplicates or delays and whoever crashes (a recovering
node starts again from an initial value). NOTE: the *sum* of the values is not a safety
property of this implementation, even without faults: an exchange is not atomic (the
initiator averages with the reply when it arrives, and its own value may have changed in
between because it answered another node's push), the effect Jelasity et al. discuss in
§3 of their paper. The sum is conserved only by exchanges that do not overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import Field

from raysim.api.protocol import (
    BatchContext,
    BatchEvents,
    BatchProtocol,
    Context,
    Params,
    Protocol,
    Violation,
    holding,
    register,
)


class Push(NamedTuple):
    """The initiator's value."""

    value: float


class Reply(NamedTuple):
    """The responder's value before it averaged."""

    value: float


class AveragingParams(Params):
    """Parameters of push-pull averaging."""

    period: int = Field(1000, ge=1, description="ticks per round")
    phase: Literal["random", "lockstep"] = "random"
    init: Literal["uniform", "peak"] = Field(
        "uniform", description="initial values: uniform in [0, 1), or 1 at node 0 and 0 elsewhere"
    )


ROUND = "round"
HULL_TOLERANCE = 1e-12  # floating-point slack on the bounds of [0, 1]


@register("gossip.average.reference")
class Averaging(Protocol):
    """Push-pull averaging, one object per node: the reference for the columnar version."""

    message_types: ClassVar[tuple[str, ...]] = ("Push", "Reply")

    Params: ClassVar[type[AveragingParams]] = AveragingParams
    checks: ClassVar[tuple[str, ...]] = ("value_in_hull",)
    log_columns: ClassVar[tuple[str, ...] | None] = ()  # the sort keys are enough
    log_kinds: ClassVar[tuple[str, ...] | None] = ("obs",)  # rows the check reads
    log_order: ClassVar[str] = "any"  # (its violations are put in canonical order)
    report: ClassVar[str | None] = "raysim.analysis.byzantine:averaging"  # + liars
    adversaries: ClassVar[dict[str, str]] = {
        "liar": "raysim.protocols.gossip.adversaries:Liar",
        "extreme": "raysim.protocols.gossip.adversaries:ExtremeLiar",
    }

    def __init__(self, params: AveragingParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.value = 0.0

    @classmethod
    def metrics(cls, params: AveragingParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node."""
        return {"messages_per_node": stats["sent"] / stats["nodes"]}

    @classmethod
    def safety(cls, params: AveragingParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``value_in_hull``: every emitted value in [0, 1] (see the module docstring)."""
        v = holding(events, "kind", ("obs",)) & holding(events, "name", ("value",))
        value = np.asarray(events["value"], dtype=np.float64)
        rows = np.flatnonzero(v & ~((value >= -HULL_TOLERANCE) & (value <= 1.0 + HULL_TOLERANCE)))
        time, node = np.asarray(events["time"]), np.asarray(events["node"])
        if "seq" in events and len(rows) > 1:  # (time, node, seq) order: the rows may be in any
            seq = np.asarray(events["seq"])
            rows = rows[np.lexsort((seq[rows], node[rows], time[rows]))]
        for t, n, x in zip(time[rows].tolist(), node[rows].tolist(), value[rows].tolist(),
                           strict=True):
            yield Violation("value_in_hull", t, (n,), f"value {x!r} is outside [0, 1]")

    def on_start(self, ctx: Context) -> None:
        if self.p.init == "uniform":
            self.value = ctx.rng.random()
        else:
            self.value = 1.0 if self.node == 0 else 0.0
        period = self.p.period
        first = period if self.p.phase == "lockstep" else 1 + ctx.rng.randrange(period)
        ctx.set_timer(first, ROUND)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.set_timer(self.p.period, ROUND)
        ctx.emit("value", self.value)
        ctx.send(ctx.random_peer(), Push(self.value))

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if type(msg) is Push:
            ctx.send(src, Reply(self.value))
        self.value = (self.value + msg.value) * 0.5


PUSH, REPLY = 0, 1


@register("gossip.average")
class AveragingColumns(BatchProtocol):
    """Push-pull averaging of one number per node (Jelasity et al. 2005), columnar."""

    Params: ClassVar[type[AveragingParams]] = AveragingParams
    message_types: ClassVar[tuple[str, ...]] = ("Push", "Reply")
    fields: ClassVar[tuple[str, ...]] = ("value",)
    adversaries: ClassVar[dict[str, str]] = {
        "liar": "raysim.protocols.gossip.adversaries:LiarColumns",
        "extreme": "raysim.protocols.gossip.adversaries:ExtremeLiarColumns",
    }

    def __init__(self, params: AveragingParams, lo: int, hi: int) -> None:
        super().__init__(params, lo, hi)
        self.p = params
        self.value = np.zeros(hi - lo)

    metrics = Averaging.metrics
    checks = Averaging.checks
    log_columns = Averaging.log_columns
    log_kinds = Averaging.log_kinds
    log_order = Averaging.log_order
    report = Averaging.report
    safety = Averaging.safety

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        if self.p.init == "uniform":
            self.value[ev.li] = ctx.random(ev.node)
        else:
            self.value[ev.li] = (ev.node == 0).astype(np.float64)
        period = self.p.period
        first = period if self.p.phase == "lockstep" else 1 + ctx.randrange(ev.node, period)
        ctx.set_timer(ev.node, ev.time + first, ROUND)

    def on_timer(self, ctx: BatchContext, ev: BatchEvents) -> None:
        ctx.set_timer(ev.node, ev.time + self.p.period, ROUND)
        v = self.value[ev.li]
        ctx.emit(ev.node, ev.time, "value", v)
        ctx.send(ev.node, ev.time, ctx.random_peer(ev.node), PUSH, value=v)

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        v = self.value[ev.li]
        push = ev.mtype == PUSH
        ctx.send(ev.node[push], ev.time[push], ev.src[push], REPLY, value=v[push])
        self.value[ev.li] = (v + ev.fields["value"]) * 0.5
