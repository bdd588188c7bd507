"""SWIM: failure detection by randomized probing, suspicion with incarnations, piggybacking.

Implements Das, Gupta and Motivala, "SWIM: Scalable Weakly-consistent Infection-style
Process Group Membership Protocol" (DSN 2002), with the suspicion mechanism of its §4.2 and
round-robin probe target selection of §4.3.

Theory of operation
-------------------
*Probing.* Every protocol ``period`` T each member probes one other member: the next in a
random permutation of the members it believes alive (reshuffled at each pass). It sends
``Ping``; without an ``Ack`` after ``ack_timeout`` it asks ``k`` other random members to
probe the target for it (``PingReq``); they ping the target on its behalf and relay its
``Ack``. If no ack, direct or relayed, has come by the end of the period, the target is
*suspected*.

*Suspicion and incarnations.* A suspected member that does not refute within
``suspect_timeout`` is declared *dead* (confirmed). A member that hears itself suspected
increments its incarnation number and disseminates ``alive`` with it. Updates order by
incarnation (§4.2): ``alive(j, i)`` overrides ``suspect(j, i')`` and ``alive(j, i')`` for
i > i'; ``suspect(j, i)`` overrides ``alive(j, i')`` for i ≥ i' and ``suspect(j, i')`` for
i > i'; ``dead`` overrides both. A recovering member comes back with a higher incarnation
(kept in stable storage), and ``alive`` with a higher incarnation overrides ``dead`` too,
so it rejoins.

*Dissemination* is piggybacked (infection style): every Ping, PingReq and Ack carries up to
``piggyback`` recent updates, those sent the fewest times first; each update is sent
``retransmit · ⌈log₂(n + 1)⌉`` times, then dropped.

Each member's view of each other member moves through the table :data:`TRANSITIONS`
(alive → suspect → dead, with refutations back to alive). Observations at the member whose
view changed, ``peer`` = the member concerned, ``value`` = its incarnation: ``suspect``,
``trust`` (back to alive from suspect or dead), ``dead``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, register

ALIVE, SUSPECT, DEAD = 0, 1, 2
STATUS = ("alive", "suspect", "dead")
Update = tuple[int, int, int]  # (member, status, incarnation)


class Ping(NamedTuple):
    """Are you alive? (``origin`` is who wants the answer; ``seq`` matches it.)"""

    seq: int
    origin: int
    updates: tuple[Update, ...]


class PingReq(NamedTuple):
    """Please ping ``target`` for me."""

    seq: int
    target: int
    updates: tuple[Update, ...]


class Ack(NamedTuple):
    """``member`` is alive (the answer to a Ping, relayed to ``origin`` if indirect)."""

    seq: int
    origin: int
    member: int
    updates: tuple[Update, ...]


class SwimParams(Params):
    """Parameters of SWIM (ticks)."""

    period: int = Field(500, ge=2, description="protocol period T'")
    ack_timeout: int = Field(100, ge=1, description="wait for a direct ack before ping-req")
    k: int = Field(3, ge=0, description="members asked to probe indirectly")
    suspect_timeout: int = Field(1500, ge=1, description="suspect -> dead after this long")
    piggyback: int = Field(6, ge=0, description="updates carried per message")
    retransmit: int = Field(3, ge=1, description="λ: sends per update = λ·⌈log2(n+1)⌉")


# (current status, incoming status) -> new status, for an update that wins by incarnation
TRANSITIONS: dict[tuple[int, int], int] = {
    (ALIVE, ALIVE): ALIVE,
    (ALIVE, SUSPECT): SUSPECT,
    (ALIVE, DEAD): DEAD,
    (SUSPECT, ALIVE): ALIVE,
    (SUSPECT, SUSPECT): SUSPECT,
    (SUSPECT, DEAD): DEAD,
    (DEAD, ALIVE): ALIVE,  # a recovered member, with a higher incarnation
    (DEAD, DEAD): DEAD,
}


class IllegalTransition(RuntimeError):
    """A view change that :data:`TRANSITIONS` does not allow."""


def wins(current: tuple[int, int], incoming: tuple[int, int]) -> bool:
    """Whether update ``incoming`` = (status, incarnation) overrides ``current`` (§4.2)."""
    cs, ci = current
    ns, ni = incoming
    if cs == DEAD:
        return ns == ALIVE and ni > ci
    if ns == DEAD:
        return True
    if ns == ALIVE:
        return ni > ci
    return ni > ci or (ni == ci and cs == ALIVE)  # suspect


PERIOD, INDIRECT = "period", "indirect"


@register("detection.swim")
class Swim(Protocol):
    """SWIM (Das, Gupta & Motivala 2002): ping, ping-req via k members, suspicion, gossip."""

    Params: ClassVar[type[SwimParams]] = SwimParams
    milestones: ClassVar[tuple[str, ...]] = ("suspect",)
    checks: ClassVar[tuple[str, ...]] = ()
    report: ClassVar[str | None] = "raysim.analysis.detection:section"

    def __init__(self, params: SwimParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params

    @classmethod
    def check(cls, params: SwimParams, n_nodes: int) -> None:
        """The ack timeout fits in a period; k intermediaries exist."""
        if params.ack_timeout >= params.period:
            raise ValueError(
                f"ack_timeout ({params.ack_timeout}) must be below period ({params.period})"
            )
        if params.k > n_nodes - 2:
            raise ValueError(f"k ({params.k}) must be at most network.nodes - 2 ({n_nodes - 2})")

    @classmethod
    def metrics(cls, params: SwimParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node per second of virtual time."""
        seconds = max(stats["end_time"], 1) / 1000.0
        return {"messages_per_node_s": stats["sent"] / stats["nodes"] / seconds}

    # --- lifecycle ----------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        n = ctx.n_nodes
        st = ctx.storage
        st["inc"] = st.get("inc", -1) + 1  # a recovery comes back with a higher incarnation
        self.inc = st["inc"]
        self.view: dict[int, tuple[int, int]] = {m: (ALIVE, 0) for m in range(n) if m != self.node}
        self.sends = self.p.retransmit * math.ceil(math.log2(n + 1))
        self.queue: dict[int, tuple[int, int, int]] = {}  # member -> (status, inc, sends left)
        self.order: list[int] = []
        self.seq = 0
        self.target = -1
        self.acked = True
        self.relay: dict[tuple[int, int], int] = {}  # (origin, seq) I probe for -> origin
        self.confirm: dict[int, int] = {}  # member -> incarnation its suspicion timer is for
        if self.inc > 0:
            self._gossip(self.node, ALIVE, self.inc)
        ctx.set_timer(1 + ctx.rng.randrange(self.p.period), PERIOD)

    # --- dissemination ------------------------------------------------------------------

    def _gossip(self, member: int, status: int, inc: int) -> None:
        self.queue[member] = (status, inc, self.sends)

    def _updates(self) -> tuple[Update, ...]:
        if not self.queue or not self.p.piggyback:
            return ()
        # fewest sends so far first (most sends left), ties by member id
        picked = sorted(self.queue.items(), key=lambda kv: (-kv[1][2], kv[0]))[: self.p.piggyback]
        out = []
        for member, (status, inc, left) in picked:
            out.append((member, status, inc))
            if left <= 1:
                del self.queue[member]
            else:
                self.queue[member] = (status, inc, left - 1)
        return tuple(out)

    def _apply(self, ctx: Context, updates: tuple[Update, ...]) -> None:
        for member, status, inc in updates:
            if member == self.node:
                if status != ALIVE and inc >= self.inc:  # refute (§4.2)
                    self.inc = ctx.storage["inc"] = inc + 1
                    self._gossip(self.node, ALIVE, self.inc)
                continue
            self._set(ctx, member, status, inc)

    def _set(self, ctx: Context, member: int, status: int, inc: int) -> None:
        current = self.view.get(member, (ALIVE, 0))
        if not wins(current, (status, inc)):
            return
        try:
            new = TRANSITIONS[(current[0], status)]
        except KeyError:
            raise IllegalTransition(
                f"swim node {self.node}: view of {member} has no transition from "
                f"{STATUS[current[0]]} to {STATUS[status]}"
            ) from None
        self.view[member] = (new, inc)
        self._gossip(member, new, inc)
        if new == SUSPECT and current[0] != SUSPECT:
            ctx.emit("suspect", inc, peer=member)
        if new == SUSPECT:
            self.confirm[member] = inc
            ctx.set_timer(self.p.suspect_timeout, ("confirm", member, inc))
        elif new == DEAD and current[0] != DEAD:
            ctx.emit("dead", inc, peer=member)
        elif new == ALIVE and current[0] != ALIVE:
            ctx.emit("trust", inc, peer=member)

    # --- probing ------------------------------------------------------------------------

    def _next_target(self, ctx: Context) -> int:
        for _ in range(2):
            while self.order:
                m = self.order.pop()
                if self.view.get(m, (DEAD, 0))[0] != DEAD:
                    return m
            self.order = [m for m in sorted(self.view) if self.view[m][0] != DEAD]
            ctx.rng.shuffle(self.order)
        return -1

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == PERIOD:
            ctx.set_timer(self.p.period, PERIOD)
            if not self.acked and self.target >= 0:
                status, inc = self.view.get(self.target, (DEAD, 0))
                if status == ALIVE:
                    self._set(ctx, self.target, SUSPECT, inc)
            self.target = self._next_target(ctx)
            if self.target < 0:
                return
            self.seq += 1
            self.acked = False
            ctx.send(self.target, Ping(self.seq, self.node, self._updates()))
            ctx.set_timer(self.p.ack_timeout, (INDIRECT, self.seq))
        elif tag[0] == INDIRECT:
            if self.acked or tag[1] != self.seq:
                return
            helpers = [
                m for m in sorted(self.view) if m != self.target and self.view[m][0] == ALIVE
            ]
            for m in ctx.rng.sample(helpers, min(self.p.k, len(helpers))):
                ctx.send(m, PingReq(self.seq, self.target, self._updates()))
        else:  # ("confirm", member, inc)
            _, member, inc = tag
            if self.view.get(member) == (SUSPECT, inc) and self.confirm.get(member) == inc:
                self._set(ctx, member, DEAD, inc)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self._apply(ctx, msg.updates)
        kind = type(msg)
        if kind is Ping:
            ctx.send(src, Ack(msg.seq, msg.origin, self.node, self._updates()))
        elif kind is PingReq:
            self.relay[(src, msg.seq)] = src
            ctx.send(msg.target, Ping(msg.seq, src, self._updates()))
        elif kind is Ack:
            if msg.origin == self.node:
                if msg.seq == self.seq and msg.member == self.target:
                    self.acked = True
            elif self.relay.pop((msg.origin, msg.seq), -1) >= 0:
                ctx.send(msg.origin, Ack(msg.seq, msg.origin, msg.member, self._updates()))
