"""Traffic for the clock protocols: random local events and sends, or a script.

Theory of operation
-------------------
The clock protocols (:mod:`~raysim.protocols.causality.lamport`,
:mod:`~raysim.protocols.causality.vector`) do nothing by themselves but keep a clock; what
makes a history is *traffic*: each node performs local events and sends messages. Two
sources of traffic share one parameter block:

* **random** (the default): every node, at exponentially distributed intervals of mean
  ``interval`` ticks (drawn from its own stream, so the run is reproducible), either sends to
  a uniformly random peer (probability ``send_prob``) or performs a local event, until
  virtual time ``until``;
* **scripted**: ``script`` lists the events themselves, e.g.
  ``[{ at = 10, node = 0, do = "send", to = 1 }, { at = 15, node = 2, do = "local" }]``,
  so that a textbook space-time diagram (Lamport 1978, Fig. 1; the course's three-process
  exercise) is an experiment file. Receives are not scripted: they happen when the network
  delivers. A script replaces the random traffic.

A node's scripted events fire as timers whose tag is the entry's index in the script, in
the script's order at equal times.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from raysim.api.protocol import Context, Params, Protocol

LOCAL, SEND = "local", "send"
NEXT = "next"  # the timer tag of the next random event


class ScriptEntry(BaseModel):
    """One scripted event: at virtual time ``at``, ``node`` does ``do`` (send to ``to``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: int = Field(ge=0, description="virtual time of the event, in ticks")
    node: int = Field(ge=0, description="the node where it happens")
    do: Literal["send", "local"] = Field(description="a send or a local event")
    to: int | None = Field(None, ge=0, description="the destination of a send")

    @model_validator(mode="after")
    def _send_has_destination(self) -> ScriptEntry:
        if self.do == SEND and self.to is None:
            raise ValueError("a send needs a destination 'to'")
        if self.do == LOCAL and self.to is not None:
            raise ValueError("a local event has no destination 'to'")
        if self.to is not None and self.to == self.node:
            raise ValueError(f"node {self.node} cannot send to itself")
        return self


class TrafficParams(Params):
    """Parameters shared by the clock protocols: random traffic, or a script."""

    interval: float = Field(100.0, gt=0, description="mean ticks between a node's events")
    send_prob: float = Field(0.5, ge=0, le=1, description="share of events that are sends")
    until: int = Field(1000, ge=0, description="no new random events from this time on")
    script: tuple[ScriptEntry, ...] = Field(
        (), description="scripted events; replace the random traffic"
    )


def check_script(params: TrafficParams, n_nodes: int) -> None:
    """Config-time check of the script against the network size (ValueError if bad)."""
    for i, e in enumerate(params.script):
        if e.node >= n_nodes:
            raise ValueError(f"script.{i}.node: {e.node} is not below network.nodes ({n_nodes})")
        if e.to is not None and e.to >= n_nodes:
            raise ValueError(f"script.{i}.to: {e.to} is not below network.nodes ({n_nodes})")


def start_traffic(ctx: Context, params: TrafficParams) -> None:
    """Schedule this node's first event: its scripted entries, or its first random one."""
    if params.script:
        for i, e in enumerate(params.script):
            if e.node == ctx.node:
                ctx.set_timer(max(0, e.at - ctx.now), i)
        return
    _schedule_next(ctx, params)


def _schedule_next(ctx: Context, params: TrafficParams) -> None:
    # Exponential gaps of mean ``interval``, at least one tick.
    gap = 1 + int(-math.log(1.0 - ctx.rng.random()) * params.interval)
    if ctx.now + gap < params.until:
        ctx.set_timer(gap, NEXT)


def next_action(ctx: Context, params: TrafficParams, tag: object) -> tuple[str, int]:
    """What a traffic timer means: ``("local", -1)`` or ``("send", destination)``.

    For random traffic this also schedules the node's next event.
    """
    if isinstance(tag, int):
        e = params.script[tag]
        return (e.do, -1 if e.to is None else e.to)
    _schedule_next(ctx, params)
    if ctx.rng.random() < params.send_prob:
        return (SEND, ctx.random_peer())
    return (LOCAL, -1)


class ClockNode(Protocol):
    """What the clock protocols share: traffic parameters, the script check, the report
    section, the ``clock_condition`` check and messages per node."""

    Params: ClassVar[type[TrafficParams]] = TrafficParams
    milestones: ClassVar[tuple[str, ...]] = ()
    report: ClassVar[str | None] = "raysim.analysis.causality_report:report_parts"
    checks: ClassVar[tuple[str, ...]] = ("clock_condition",)

    def __init__(self, params: TrafficParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params

    @classmethod
    def check(cls, params: TrafficParams, n_nodes: int) -> None:
        """The script's nodes must exist."""
        check_script(params, n_nodes)

    @classmethod
    def metrics(cls, params: TrafficParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages sent per node."""
        return {"messages_per_node": stats["sent"] / stats["nodes"]}
