"""A naive leader election: the lowest id heard from within a timeout leads. No terms.

The course's counter-example ("Timeout Ambiguity": a node cannot tell a slow peer from a
dead one). Every node sends ``Hello`` to every other node each ``period`` ticks and, on each
of its own rounds, takes as leader the lowest id among itself and the nodes it heard from
within the last ``timeout`` ticks. It believes it is leader exactly when that id is its own.

Nothing orders two beliefs: when the lowest node's hellos are delayed past the timeout (a
delay spike) or cut off (a partition), the next node takes over while the lowest one still
leads, and both are leader at once. :func:`raysim.protocols.consensus.checks.single_leader`
finds it in the log. Raft (:mod:`raysim.protocols.consensus.raft`) cannot prevent a deposed
leader from *believing* it leads either; it makes that belief harmless with terms (a
majority has moved on, so the old leader commits nothing) and leases (it stops serving
reads before anyone else may start).

Phases (:data:`TRANSITIONS`): follower ↔ leader. Observations: ``leader`` and ``step_down``,
value 0 (the only "term").
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, register
from raysim.protocols.consensus import checks as ck
from raysim.protocols.consensus import measures


class Hello(NamedTuple):
    """I am alive."""


class NaiveParams(Params):
    """Parameters of the naive election (ticks)."""

    period: int = Field(50, ge=1, description="hello period")
    timeout: int = Field(150, ge=1, description="a node not heard from this long is dead")


FOLLOWER, LEADER = "follower", "leader"
TRANSITIONS: dict[tuple[str, str], str] = {
    (FOLLOWER, "lowest"): LEADER,
    (LEADER, "lower_alive"): FOLLOWER,
}


class IllegalTransition(RuntimeError):
    """A phase change that :data:`TRANSITIONS` does not allow."""


@register("consensus.naive_leader")
class NaiveLeader(Protocol):
    """Naive leader election: the lowest id heard from within a timeout leads (no terms)."""

    Params: ClassVar[type[NaiveParams]] = NaiveParams
    milestones: ClassVar[tuple[str, ...]] = ("leader",)
    log_needs: ClassVar[str] = "observations"  # the checks read obs and lifecycle rows
    checks: ClassVar[tuple[str, ...]] = ("single_leader",)
    report: ClassVar[str | None] = "raysim.analysis.consensus:naive_section"

    def __init__(self, params: NaiveParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.role = FOLLOWER
        self.heard: dict[int, int] = {}

    @classmethod
    def check(cls, params: NaiveParams, n_nodes: int) -> None:
        """The timeout must exceed the period, or every node suspects every other."""
        if params.timeout <= params.period:
            raise ValueError(f"timeout ({params.timeout}) must exceed period ({params.period})")

    @classmethod
    def metrics(cls, params: NaiveParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node."""
        return {"messages_per_node": stats["sent"] / stats["nodes"]}

    @classmethod
    def log_metrics(cls, params: NaiveParams, events: ck.Columns, n_nodes: int
                    ) -> dict[str, float]:
        """Leader changes, nodes that led, ticks with two leaders at once (from the log)."""
        return measures.naive_metrics(events)

    @classmethod
    def safety(cls, params: NaiveParams, events: ck.Columns) -> list[ck.Violation]:
        """At most one leader at any instant."""
        return ck.run_checks(events, cls.checks)

    def _go(self, event: str) -> None:
        try:
            self.role = TRANSITIONS[(self.role, event)]
        except KeyError:
            raise IllegalTransition(
                f"naive node {self.node}: no transition from {self.role} on {event!r}"
            ) from None

    def on_start(self, ctx: Context) -> None:
        self.role = FOLLOWER
        self.heard = {}
        self.started = ctx.now
        ctx.set_timer(1 + ctx.rng.randrange(self.p.period), "round")

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self.heard[src] = ctx.now

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.set_timer(self.p.period, "round")
        for peer in range(ctx.n_nodes):
            if peer != self.node:
                ctx.send(peer, Hello())
        if ctx.now - self.started < self.p.timeout:
            return  # listen for one timeout before believing anything
        cutoff = ctx.now - self.p.timeout
        lowest = min([self.node, *(p for p, t in self.heard.items() if t > cutoff)])
        if lowest == self.node and self.role == FOLLOWER:
            self._go("lowest")
            ctx.emit("leader", 0)
        elif lowest != self.node and self.role == LEADER:
            self._go("lower_alive")
            ctx.emit("step_down", 0)
