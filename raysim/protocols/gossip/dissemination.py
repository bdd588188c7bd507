"""Rumor dissemination by push, pull and push-pull gossip.

Implements the epidemic broadcast of Demers et al., "Epidemic algorithms for replicated
database maintenance" (PODC 1987), in the round structure of Karp, Schindelhauer, Shenker
and Vöcking, "Randomized rumor spreading" (FOCS 2000), and Algorithm 7 of the course notes
(push-pull). One node (``source``) holds an update at time 0. Every ``period`` ticks each node
runs a round, at its own random phase (``phase = "random"``) or in lock-step with all others
(``phase = "lockstep"``, all rounds at multiples of ``period``):

=========  ==============================================================================
mode       what a round does
=========  ==============================================================================
push       an informed node sends the rumor to ``fanout`` random peers
pull       an uninformed node asks ``fanout`` random peers; an informed one answers
push_pull  every node sends its state to ``fanout`` random peers, which answer with theirs
=========  ==============================================================================

Each node emits the observation ``informed`` (value 1) when it first learns the update.
Two implementations write the same event log: the registered names ``gossip``,
``gossip.push``, ``gossip.pull`` and ``gossip.push_pull`` keep the state as numpy columns
and handle events in batches (:class:`GossipColumns`); ``gossip.reference`` is the plain
per-node state machine (:class:`Gossip`), the one to read first.
With push, fanout 1 and lock-step rounds, the number of rounds until all N nodes know is
log2 N + ln N + O(1) (Frieze and Grimmett 1985; Pittel 1987).

Safety check (run over the event log after every fully logged run, see
:meth:`Gossip.safety`): ``informed_by_delivery`` — a node other than the source becomes
``informed`` only after it was delivered, since it last (re)started, a message that can
carry the update (``Rumor``, ``Exchange`` or ``ExchangeReply``) sent by a node that was
informed at the time of sending. A lost, partitioned or corrupted copy never counts (it has
no ``deliver`` row), and a node that recovers from a crash must learn again.
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
    register,
)


class Rumor(NamedTuple):
    """The update itself (push, or a pull answer)."""


class PullRequest(NamedTuple):
    """An uninformed node asks whether the peer knows the update."""


class Exchange(NamedTuple):
    """Push-pull: the initiator's state."""

    informed: bool


class ExchangeReply(NamedTuple):
    """Push-pull: the responder's state, after merging the initiator's."""

    informed: bool


class GossipParams(Params):
    """Parameters of rumor dissemination."""

    mode: Literal["push", "pull", "push_pull"] = "push_pull"
    fanout: int = Field(1, ge=1, description="peers contacted per round")
    period: int = Field(1000, ge=1, description="ticks per round")
    phase: Literal["random", "lockstep"] = Field(
        "random", description="rounds at a random per-node phase, or all at once"
    )
    source: int = Field(0, ge=0, description="the node that holds the update at time 0")


ROUND = "round"


@register("gossip.reference")
class Gossip(Protocol):
    """Rumor dissemination, one object per node: the reference for the columnar version."""

    Params: ClassVar[type[GossipParams]] = GossipParams
    milestones: ClassVar[tuple[str, ...]] = ("informed",)
    checks: ClassVar[tuple[str, ...]] = ("informed_by_delivery",)
    report: ClassVar[str | None] = "raysim.analysis.section:gossip"

    def __init__(self, params: GossipParams, node: int) -> None:
        super().__init__(params, node)
        self.informed = False
        self.p = params

    @classmethod
    def check(cls, params: GossipParams, n_nodes: int) -> None:
        """Cross-check parameters against the network size."""
        if params.source >= n_nodes:
            raise ValueError(f"source must be a node id below network.nodes ({n_nodes})")
        if params.fanout >= n_nodes:
            raise ValueError(f"fanout must be below network.nodes ({n_nodes})")

    @classmethod
    def metrics(cls, params: GossipParams, stats: dict[str, Any]) -> dict[str, float]:
        """Rounds until the last node learned the update, and messages per node."""
        n = stats["nodes"]
        out = {"messages_per_node": stats["sent"] / n}
        if stats.get("informed_nodes", 0) >= n:
            out["rounds_to_full"] = stats["informed_time"] / params.period
        out["informed_fraction"] = stats.get("informed_nodes", 0) / n
        return out

    @classmethod
    def safety(cls, params: GossipParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``informed_by_delivery`` (see the module docstring), vectorised over the log."""
        yield from informed_by_delivery(params.source, events)

    def on_start(self, ctx: Context) -> None:
        if self.node == self.p.source:
            self._learn(ctx)
        period = self.p.period
        first = period if self.p.phase == "lockstep" else 1 + ctx.rng.randrange(period)
        ctx.set_timer(first, ROUND)

    def _learn(self, ctx: Context) -> None:
        if not self.informed:
            self.informed = True
            ctx.emit("informed", 1.0)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.set_timer(self.p.period, ROUND)
        mode = self.p.mode
        if mode == "push":
            if self.informed:
                self._contact(ctx, Rumor())
        elif mode == "pull":
            if not self.informed:
                self._contact(ctx, PullRequest())
        else:
            self._contact(ctx, Exchange(self.informed))

    def _contact(self, ctx: Context, msg: object) -> None:
        picked: list[int] = []
        while len(picked) < self.p.fanout:  # distinct random peers, in the order drawn
            peer = ctx.random_peer()
            if peer not in picked:
                picked.append(peer)
                ctx.send(peer, msg)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind = type(msg)
        if kind is Rumor:
            self._learn(ctx)
        elif kind is PullRequest:
            if self.informed:
                ctx.send(src, Rumor())
        elif kind is Exchange:
            if msg.informed:
                self._learn(ctx)
            ctx.send(src, ExchangeReply(self.informed))
        elif kind is ExchangeReply and msg.informed:
            self._learn(ctx)


CARRIERS = ("Rumor", "Exchange", "ExchangeReply")  # messages that can carry the update
# Order of a node's rows within one tick when the log has no ``seq`` column: a handler's
# (re)start comes first, then the delivery it handles, its observation, its sends.
_TICK_ORDER = {"start": 0, "recover": 0, "join": 0, "deliver": 1, "obs": 2, "send": 3}


def _program_order(events: Mapping[str, Any]) -> np.ndarray:
    """Each row's rank in program order: (time, node, seq), or (time, node, kind) without seq."""
    kind = events["kind"]
    if "seq" in events:
        third = np.asarray(events["seq"])
    else:
        third = np.array([_TICK_ORDER.get(k, 4) for k in kind], dtype=np.int64)
    order = np.lexsort((third, events["node"], events["time"]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _latest_before(
    q_node: np.ndarray, q_pos: np.ndarray, e_node: np.ndarray, e_pos: np.ndarray, span: int
) -> np.ndarray:
    """For each query, the largest ``e_pos`` at the same node below ``q_pos``; -1 if none."""
    if len(e_pos) == 0:
        return np.full(len(q_pos), -1, dtype=np.int64)
    ekey = e_node * span + e_pos
    order = np.argsort(ekey, kind="stable")
    ekey, ep = ekey[order], e_pos[order]
    i = np.searchsorted(ekey, q_node * span + q_pos, side="left") - 1
    j = np.clip(i, 0, None)
    return np.where((i >= 0) & (ekey[j] // span == q_node), ep[j], -1)


def informed_by_delivery(source: int, events: Mapping[str, Any]) -> Iterator[Violation]:
    """Violations of ``informed_by_delivery`` in a gossip run's event log."""
    kind, name = events["kind"], events["name"]
    node = np.asarray(events["node"], dtype=np.int64)
    time = np.asarray(events["time"], dtype=np.int64)
    msg_id = np.asarray(events["msg_id"], dtype=np.int64)
    pos = _program_order(events)
    span = len(pos) + 1
    informed = (kind == "obs") & (name == "informed")
    restart = np.isin(kind, list(_TICK_ORDER)[:3])

    def state(q_node: np.ndarray, q_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last_rs = _latest_before(q_node, q_pos, node[restart], pos[restart], span)
        last_inf = _latest_before(q_node, q_pos, node[informed], pos[informed], span)
        return last_rs, last_inf

    # Sends of a carrier by a node informed at that moment (since its last restart).
    send = (kind == "send") & np.isin(events["msg_type"], CARRIERS)
    rs, inf = state(node[send], pos[send])
    good_ids = np.sort(msg_id[send][(inf >= 0) & (inf > rs)])
    # Deliveries of those messages.
    deliver = kind == "deliver"
    d_ids = msg_id[deliver]
    k = np.clip(np.searchsorted(good_ids, d_ids), 0, max(len(good_ids) - 1, 0))
    good = (good_ids[k] == d_ids) if len(good_ids) else np.zeros(len(d_ids), dtype=bool)
    d_node, d_pos = node[deliver][good], pos[deliver][good]
    # Every informed observation at a node other than the source needs one since restart.
    q = informed & (node != source)
    q_node, q_pos = node[q], pos[q]
    last_rs = _latest_before(q_node, q_pos, node[restart], pos[restart], span)
    last_dv = _latest_before(q_node, q_pos, d_node, d_pos, span)
    bad = (last_dv < 0) | (last_dv < last_rs)
    for t, n in zip(time[q][bad].tolist(), q_node[bad].tolist(), strict=True):
        yield Violation(
            "informed_by_delivery", t, (n,),
            f"node {n} became informed without a delivery of the update from an informed "
            "node since it (re)started",
        )


RUMOR, PULL_REQUEST, EXCHANGE, EXCHANGE_REPLY = range(4)


@register("gossip", presets={})
@register("gossip.push", presets={"mode": "push"})
@register("gossip.pull", presets={"mode": "pull"})
@register("gossip.push_pull", presets={"mode": "push_pull"})
class GossipColumns(BatchProtocol):
    """Rumor dissemination by push, pull or push-pull gossip (Demers et al. 1987), columnar."""

    Params: ClassVar[type[GossipParams]] = GossipParams
    message_types: ClassVar[tuple[str, ...]] = ("Rumor", "PullRequest", "Exchange", "ExchangeReply")
    fields: ClassVar[tuple[str, ...]] = ("informed",)
    milestones: ClassVar[tuple[str, ...]] = ("informed",)
    checks = Gossip.checks
    report = Gossip.report
    check = Gossip.check
    metrics = Gossip.metrics
    safety = Gossip.safety

    def __init__(self, params: GossipParams, lo: int, hi: int) -> None:
        super().__init__(params, lo, hi)
        self.p = params
        self.informed = np.zeros(hi - lo, dtype=bool)

    def _learn(self, ctx: BatchContext, node: np.ndarray, time: np.ndarray) -> None:
        new = ~self.informed[node - self.lo]
        if new.any():
            self.informed[node[new] - self.lo] = True
            ctx.emit(node[new], time[new], "informed", 1.0)

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        self.informed[ev.li] = False  # a recovering node has lost the update
        src = ev.node == self.p.source
        self._learn(ctx, ev.node[src], ev.time[src])
        period = self.p.period
        first = period if self.p.phase == "lockstep" else 1 + ctx.randrange(ev.node, period)
        ctx.set_timer(ev.node, ev.time + first, ROUND)

    def on_timer(self, ctx: BatchContext, ev: BatchEvents) -> None:
        ctx.set_timer(ev.node, ev.time + self.p.period, ROUND)
        informed = self.informed[ev.li]
        mode = self.p.mode
        if mode == "push":
            self._contact(ctx, ev.node[informed], ev.time[informed], RUMOR, 0.0)
        elif mode == "pull":
            self._contact(ctx, ev.node[~informed], ev.time[~informed], PULL_REQUEST, 0.0)
        else:
            self._contact(ctx, ev.node, ev.time, EXCHANGE, informed.astype(np.float64))

    def _contact(
        self, ctx: BatchContext, node: np.ndarray, time: np.ndarray, mtype: int, flag: Any
    ) -> None:
        """Each node sends to ``fanout`` distinct random peers, drawn as the per-node loop does."""
        fanout, n = self.p.fanout, len(node)
        if n == 0:
            return
        flag = np.broadcast_to(np.asarray(flag, dtype=np.float64), (n,))
        picked = np.full((n, fanout), -1, dtype=np.int64)
        count = np.zeros(n, dtype=np.int64)
        todo = np.arange(n)
        while len(todo):  # one draw per unfinished node per pass; duplicates are redrawn
            peer = ctx.random_peer(node[todo])
            fresh = ~(picked[todo] == peer[:, None]).any(axis=1)
            rows = todo[fresh]
            picked[rows, count[rows]] = peer[fresh]
            count[rows] += 1
            todo = todo[count[todo] < fanout]
        ctx.send(
            np.repeat(node, fanout),
            np.repeat(time, fanout),
            picked.ravel(),
            mtype,
            informed=np.repeat(flag, fanout),
        )

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        t, has = ev.mtype, ev.fields["informed"] > 0
        learn = (t == RUMOR) | (((t == EXCHANGE) | (t == EXCHANGE_REPLY)) & has)
        self._learn(ctx, ev.node[learn], ev.time[learn])
        informed = self.informed[ev.li]
        answer = (t == PULL_REQUEST) & informed
        ctx.send(ev.node[answer], ev.time[answer], ev.src[answer], RUMOR)
        ex = t == EXCHANGE
        ctx.send(
            ev.node[ex],
            ev.time[ex],
            ev.src[ex],
            EXCHANGE_REPLY,
            informed=informed[ex].astype(np.float64),
        )
