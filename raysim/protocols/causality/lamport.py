"""Lamport clocks kept by the protocol itself (course Algorithm 5; Lamport, CACM 1978).

Theory of operation
-------------------
L. Lamport, "Time, clocks, and the ordering of events in a distributed system" (CACM 21(7),
1978), and Algorithm 5 of the course notes. Every node keeps a counter ``clock``:

==========  ==========================================================================
event       rule
==========  ==========================================================================
local       ``clock ← clock + 1``
send        ``clock ← clock + 1``; the message carries ``ts = clock``
receive     ``clock ← max(clock, ts) + 1``
==========  ==========================================================================

The node emits its clock after every one of these events as the observation ``lamport``
(an int): ``peer`` is the destination of a send or the source of a receive, and ``ref`` the
message's id (the value :meth:`Context.send` returned, or :attr:`Context.cause` on receive),
so that :func:`raysim.analysis.check_clock_condition` can attach each stamp to the engine's
own send or deliver row and check a → b ⇒ C(a) < C(b) against the engine's happens-before
graph. A local event's stamp is the observation row itself.

Traffic (which events happen when) comes from :mod:`~raysim.protocols.causality.traffic`:
random, or a script such as the course's three-process exercise
(``experiments/lamport_three.toml``).
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
from raysim.values.clocks import LamportClock


class Stamped(NamedTuple):
    """An application message carrying the sender's Lamport timestamp."""

    ts: int


@register("clocks.lamport")
class LamportNode(ClockNode):
    """Lamport clocks (Algorithm 5): tick on local events and sends, max + 1 on receive."""

    def __init__(self, params: TrafficParams, node: int) -> None:
        super().__init__(params, node)
        self.clock = LamportClock(pid=node)

    @classmethod
    def safety(cls, params: TrafficParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``clock_condition``: every clocked event whose causal past (in the engine's graph)
        holds a stamp not below its own (:func:`~raysim.protocols.causality.oracle.
        clock_safety`)."""
        values = "value_int" if "value_int" in events else "value"
        for time, nodes, detail in oracle.clock_safety(events, "lamport", values):
            yield Violation("clock_condition", time, nodes, detail)

    def on_start(self, ctx: Context) -> None:
        start_traffic(ctx, self.p)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        action, dst = next_action(ctx, self.p, tag)
        if action == SEND:
            self.clock, ts = self.clock.send()
            mid = ctx.send(dst, Stamped(ts))
            ctx.emit("lamport", ts, peer=dst, ref=mid)
        else:
            self.clock = self.clock.tick()
            ctx.emit("lamport", self.clock.time)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self.clock = self.receive(msg.ts)
        ctx.emit("lamport", self.clock.time, peer=src, ref=ctx.cause)

    def receive(self, ts: int) -> LamportClock:
        """The clock after receiving ``ts`` (Algorithm 5, line 8); a subclass may get it wrong."""
        return self.clock.receive(ts)
