"""Bracha's reliable broadcast: agreement despite f Byzantine nodes, if n >= 3f + 1.

Follows G. Bracha, "Asynchronous Byzantine agreement protocols", Information and
Computation 75(2), 1987 (the broadcast primitive of §2; also Cachin, Guerraoui and
Rodrigues, *Introduction to Reliable and Secure Distributed Programming*, 2nd ed., §3.11,
"authenticated double-echo broadcast" without signatures).

Theory of operation
-------------------
One node, the ``sender``, broadcasts a ``value``. Every node runs three steps, each at most
once, counting messages by distinct sender:

1. on ``Initial(v)`` from the sender: send ``Echo(v)`` to all;
2. on more than ``(n + f) / 2`` ``Echo(v)``, or ``f + 1`` ``Ready(v)``: send ``Ready(v)`` to
   all (the second rule is the amplification that gives totality);
3. on ``2f + 1`` ``Ready(v)``: deliver ``v`` (emit ``deliver`` with the value).

``f`` is the number of Byzantine nodes the thresholds assume, at most ``(n - 1) // 3``
(the default). With at most ``f`` Byzantine nodes it guarantees, over the honest nodes:
*agreement* (no two deliver different values: two echo quorums of more than ``(n + f) / 2``
intersect in an honest node, which echoes only once), *validity* (if the sender is honest,
they deliver its value) and *totality* (if one delivers, all do: its ``2f + 1`` readies
include ``f + 1`` honest ones, which make every honest node ready). With more Byzantine
nodes than that — at ``n / 3`` or more — an equivocating sender plus ``n / 3 - 1`` helpers
make two halves of the honest nodes deliver different values: the honest-majority
assumption behind every threshold is gone.

A node sends to every node, itself included (its own echo counts), so a broadcast costs
``n`` initial messages and up to ``2 n^2`` echoes and readies.

Adversaries (``[faults.byzantine] behaviour``, :mod:`raysim.protocols.byzantine.adversaries`):
``equivocate`` — every Byzantine node (the sender among them, if it is one) tells nodes of
even id ``value`` and nodes of odd id ``value + 1`` in every message it sends; ``silent``
— Byzantine nodes never echo or ready. Byzantine nodes emit ``byzantine`` at start, so the
checks below know who is honest.

Safety checks (every fully logged run, :meth:`Bracha.safety`): ``agreement`` (no two honest
nodes deliver different values, and none delivers twice), ``validity`` (with an honest
sender every honest delivery is its value) and ``totality`` (if an honest node delivered,
every honest node did by the end of the run; meaningful without message loss or crashes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, Violation, register


class Initial(NamedTuple):
    """The sender's value."""

    value: int


class Echo(NamedTuple):
    """A node echoes the value it got from the sender."""

    value: int


class Ready(NamedTuple):
    """A node is ready to deliver the value."""

    value: int


class BrachaParams(Params):
    """Parameters of Bracha's reliable broadcast."""

    sender: int = Field(0, ge=0, description="the broadcasting node")
    value: int = Field(1, description="the value it broadcasts")
    f: int | None = Field(None, ge=0, description="faults the thresholds assume; default (n-1)//3")
    at: int = Field(1, ge=0, description="when the sender broadcasts (ticks)")


def thresholds(n: int, f: int) -> tuple[int, int, int]:
    """(echoes to get ready, readies to get ready, readies to deliver) for n nodes, f faults."""
    return (n + f) // 2 + 1, f + 1, 2 * f + 1


@register("byzantine.bracha")
class Bracha(Protocol):
    """One node of Bracha's reliable broadcast (per-node state machine)."""

    Params: ClassVar[type[BrachaParams]] = BrachaParams
    milestones: ClassVar[tuple[str, ...]] = ("deliver",)
    checks: ClassVar[tuple[str, ...]] = ("agreement", "validity", "totality")
    report: ClassVar[str | None] = "raysim.analysis.byzantine:bracha"
    adversaries: ClassVar[dict[str, str]] = {
        "equivocate": "raysim.protocols.byzantine.adversaries:Equivocator",
        "silent": "raysim.protocols.byzantine.adversaries:Silent",
    }

    def __init__(self, params: BrachaParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.echoed = False
        self.readied = False
        self.delivered = False
        self.echoes: dict[int, set[int]] = {}
        self.readies: dict[int, set[int]] = {}
        self.n = 0
        self.f = 0

    @classmethod
    def check(cls, params: BrachaParams, n_nodes: int) -> None:
        """The sender must be a node; ``f`` at most ``n - 1`` (above ``(n-1)//3`` is allowed,
        to show what breaks)."""
        if params.sender >= n_nodes:
            raise ValueError(f"sender ({params.sender}) must be below network.nodes ({n_nodes})")
        if params.f is not None and params.f >= n_nodes:
            raise ValueError(f"f ({params.f}) must be below network.nodes ({n_nodes})")

    @classmethod
    def metrics(cls, params: BrachaParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per broadcast (one broadcast per run) and per node."""
        return {
            "messages_per_broadcast": float(stats["sent"]),
            "messages_per_node": stats["sent"] / stats["nodes"],
        }

    # --- the protocol ----------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        self.n = ctx.n_nodes
        self.f = self.p.f if self.p.f is not None else (self.n - 1) // 3
        if self.node == self.p.sender:
            ctx.set_timer(self.p.at, "broadcast")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        self.broadcast(ctx, Initial, self.p.value)

    def broadcast(self, ctx: Context, kind: type, value: int) -> None:
        """Send ``kind(value)`` to every node, this one included."""
        for dst in range(self.n):
            ctx.send(dst, kind(value))

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind = type(msg)
        if kind is Initial:
            if src == self.p.sender and not self.echoed:
                self.echoed = True
                self.broadcast(ctx, Echo, msg.value)
            return
        table = self.echoes if kind is Echo else self.readies
        table.setdefault(msg.value, set()).add(src)
        self.progress(ctx, msg.value)

    def progress(self, ctx: Context, v: int) -> None:
        """Apply the ready and deliver rules for value ``v``."""
        need_echo, need_ready, need_deliver = thresholds(self.n, self.f)
        e, r = len(self.echoes.get(v, ())), len(self.readies.get(v, ()))
        if not self.readied and (e >= need_echo or r >= need_ready):
            self.readied = True
            self.broadcast(ctx, Ready, v)
        if not self.delivered and r >= need_deliver:
            self.delivered = True
            ctx.emit("deliver", v)

    # --- safety ------------------------------------------------------------------------------

    @classmethod
    def safety(cls, params: BrachaParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``agreement``, ``validity`` and ``totality`` over the honest nodes."""
        obs = events["kind"] == "obs"
        names = events["name"]
        nodes, times = events["node"], events["time"]
        liars = set(nodes[obs & (names == "byzantine")].tolist())
        started = set(nodes[events["kind"] == "start"].tolist())
        d = obs & (names == "deliver") & ~np.isin(nodes, list(liars))
        dn, dt = nodes[d].tolist(), times[d].tolist()
        dv = np.asarray(events["value"][d], dtype=np.float64).astype(np.int64).tolist()
        first: dict[int, tuple[int, int]] = {}
        for n, t, v in zip(dn, dt, dv, strict=True):
            if n in first:
                yield Violation("agreement", t, (n,), f"node {n} delivered twice ({v})")
                continue
            first[n] = (t, v)
        values = sorted({v for _, v in first.values()})
        if len(values) > 1:
            a = min(n for n, (_, v) in first.items() if v == values[0])
            b = min(n for n, (_, v) in first.items() if v == values[1])
            t = max(first[a][0], first[b][0])
            yield Violation(
                "agreement", t, (a, b),
                f"honest nodes {a} and {b} delivered {values[0]} and {values[1]} "
                f"({len(first)} honest deliveries, values {values})",
            )
        if params.sender not in liars:
            for n, (t, v) in sorted(first.items()):
                if v != params.value:
                    yield Violation(
                        "validity", t, (n, params.sender),
                        f"node {n} delivered {v}, the honest sender {params.sender} sent "
                        f"{params.value}",
                    )
        if first:
            missing = sorted(started - liars - set(first))
            if missing:
                t_end = int(times.max()) if len(times) else 0
                yield Violation(
                    "totality", t_end, tuple(missing[:8]),
                    f"{len(first)} honest nodes delivered but {len(missing)} did not "
                    f"(first: {missing[:8]})",
                )
