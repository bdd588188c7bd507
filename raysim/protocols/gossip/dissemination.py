"""Rumor dissemination by push, pull and push-pull gossip.

Implements the epidemic broadcast of Demers et al., "Epidemic algorithms for replicated
database maintenance" (PODC 1987), in the round structure of Karp, Schindelhauer, Shenker
and Vöcking, "Randomized rumor spreading" (FOCS 2000), and Algorithm 7 of the course notes
(push-pull). One node (``source``) holds an update at time 0. Every ``period`` ticks each node
runs a round; ``phase`` says how the rounds of different nodes relate:

============  ===========================================================================
phase         what it models
============  ===========================================================================
random        each node's rounds at its own random offset in [1, period]: asynchronous
              gossip; news can cross several hops within one period
lockstep      every node's round timer fires at the same ticks (multiples of ``period``),
              but a message is handled when it arrives: a reply carries the responder's
              state at delivery time, which may include what it learned earlier in the
              same round (so pull and push-pull finish sooner than the synchronous model)
synchronous   the synchronous-round model of the theory (Karp et al. 2000; Demers et al.
              1987): rounds at multiples of ``period``, and every message of round r —
              request, reply and the state they carry — uses the sender's state at the
              start of round r; what a node learns in round r counts from round r + 1.
              Every message must arrive within its round (network delays below
              ``period``); a later one stops the run with an error.
============  ===========================================================================

What a round does:

=========  ==============================================================================
mode       what a round does
=========  ==============================================================================
push       an informed node sends the rumor to ``fanout`` random peers
pull       an uninformed node asks ``fanout`` random peers; an informed one answers
push_pull  every node sends its state to ``fanout`` random peers, which answer with theirs
=========  ==============================================================================

Each node emits the observation ``informed`` (value 1) when it first learns the update.
The metric ``rounds_to_full`` is an integer, the round in which the last node learned (see
:func:`round_of`); ``periods_to_full`` is the same moment as a fraction, informed time divided
by ``period`` (it includes the last message's delay).
Two implementations write the same event log: the registered names ``gossip``,
``gossip.push``, ``gossip.pull`` and ``gossip.push_pull`` keep the state as numpy columns
and handle events in batches (:class:`GossipColumns`); ``gossip.reference`` is the plain
per-node state machine (:class:`Gossip`), the one to read first.
With push, fanout 1 and synchronous rounds, the number of rounds until all N nodes know is
log2 N + ln N + O(1) (Frieze and Grimmett 1985; Pittel 1987).

Safety check (run over the event log after every fully logged run, see
:meth:`Gossip.safety`): ``informed_by_delivery`` — a node other than the source becomes
``informed`` only after it was delivered, since it last (re)started, a message that can
carry the update (``Rumor``, ``Exchange`` or ``ExchangeReply``) sent by a node that was
informed at the time of sending. A lost, partitioned or corrupted copy never counts (it has
no ``deliver`` row), and a node that recovers from a crash must learn again.
"""

from __future__ import annotations

import math
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


class Rumor(NamedTuple):
    """The update itself (push, or a pull answer)."""

    round: int = -1  # synchronous phase: the round of the exchange; -1 otherwise


class PullRequest(NamedTuple):
    """An uninformed node asks whether the peer knows the update."""

    round: int = -1


class Exchange(NamedTuple):
    """Push-pull: the initiator's state."""

    informed: bool
    round: int = -1


class ExchangeReply(NamedTuple):
    """Push-pull: the responder's state (after merging the initiator's, except in the
    synchronous phase, where it is the state at the start of the round)."""

    informed: bool
    round: int = -1


class GossipParams(Params):
    """Parameters of rumor dissemination."""

    mode: Literal["push", "pull", "push_pull"] = "push_pull"
    fanout: int = Field(1, ge=1, description="peers contacted per round")
    period: int = Field(1000, ge=1, description="ticks per round")
    phase: Literal["random", "lockstep", "synchronous"] = Field(
        "random",
        description="rounds at a random per-node phase, all at once (lockstep), or all at "
        "once with every exchange seeing the state at the round's start (synchronous)",
    )
    source: int = Field(0, ge=0, description="the node that holds the update at time 0")


ROUND = "round"
NEVER = 2**62  # ``since`` of a node that does not know the update


def round_of(time: float, period: int, phase: str) -> int:
    """The round in which something that happened at ``time`` (ticks) happened.

    With ``lockstep`` and ``synchronous`` phases round r starts at r·period, so it is
    ⌊time / period⌋ (0 for the source at time 0). With ``random`` phases every node runs its
    first round somewhere in [1, period], so round r is the period ((r−1)·period, r·period]:
    ⌈time / period⌉.
    """
    if phase == "random":
        return math.ceil(time / period)
    return int(time // period)


def late_error(now: int, rnd: int, period: int) -> ValueError:
    """The error of a synchronous-phase message that arrived after its round ended."""
    return ValueError(
        f"phase = 'synchronous': a message of round {rnd} arrived at t = {now}, after its "
        f"round ended at {(rnd + 1) * period}; synchronous rounds need network delays "
        f"(request plus reply) below protocol.period ({period})"
    )


@register("gossip.reference")
class Gossip(Protocol):
    """Rumor dissemination, one object per node: the reference for the columnar version."""

    message_types: ClassVar[tuple[str, ...]] = ("Rumor", "PullRequest", "Exchange", "ExchangeReply")

    Params: ClassVar[type[GossipParams]] = GossipParams
    milestones: ClassVar[tuple[str, ...]] = ("informed",)
    checks: ClassVar[tuple[str, ...]] = ("informed_by_delivery",)
    log_columns: ClassVar[tuple[str, ...] | None] = ()  # the sort keys are enough
    log_kinds: ClassVar[tuple[str, ...] | None] = (
        "start", "recover", "join", "deliver", "obs", "send")  # the rows the check reads
    log_order: ClassVar[str] = "any"  # the check orders each node's rows by seq
    report: ClassVar[str | None] = "raysim.analysis.section:gossip"

    def __init__(self, params: GossipParams, node: int) -> None:
        super().__init__(params, node)
        self.informed = False
        # synchronous phase: the first round at whose start the node knew (NEVER: not yet)
        self.since = NEVER
        self.p = params
        self.sync = params.phase == "synchronous"

    @classmethod
    def check(cls, params: GossipParams, n_nodes: int) -> None:
        """Cross-check parameters against the network size."""
        if params.source >= n_nodes:
            raise ValueError(f"source must be a node id below network.nodes ({n_nodes})")
        if params.fanout >= n_nodes:
            raise ValueError(f"fanout must be below network.nodes ({n_nodes})")

    @classmethod
    def metrics(cls, params: GossipParams, stats: dict[str, Any]) -> dict[str, float]:
        """The round in which the last node learned the update (``rounds_to_full``, an
        integer, see :func:`round_of`), the same moment in periods (``periods_to_full``,
        informed time / period), and messages per node."""
        n = stats["nodes"]
        out = {"messages_per_node": stats["sent"] / n}
        if stats.get("informed_nodes", 0) >= n:
            t = stats["informed_time"]
            out["rounds_to_full"] = float(round_of(t, params.period, params.phase))
            out["periods_to_full"] = t / params.period
        out["informed_fraction"] = stats.get("informed_nodes", 0) / n
        return out

    @classmethod
    def safety(cls, params: GossipParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``informed_by_delivery`` (see the module docstring), vectorised over the log."""
        yield from informed_by_delivery(params.source, events)

    def on_start(self, ctx: Context) -> None:
        if self.node == self.p.source:
            self._learn(ctx, 0)
        period, phase = self.p.period, self.p.phase
        if phase == "random":
            first = 1 + ctx.rng.randrange(period)
        elif phase == "synchronous":  # the next round start (a recovering node joins it)
            first = period - ctx.now % period
        else:
            first = period
        ctx.set_timer(first, ROUND)

    def _learn(self, ctx: Context, since: int) -> None:
        if not self.informed:
            self.informed = True
            self.since = since
            ctx.emit("informed", 1.0)

    def _knew(self, rnd: int) -> bool:
        """The state an exchange of round ``rnd`` uses: at the round's start (synchronous
        phase), or now (the other phases, which pass ``rnd = -1``)."""
        return self.since <= rnd if self.sync else self.informed

    def on_timer(self, ctx: Context, tag: Any) -> None:
        p = self.p
        ctx.set_timer(p.period, ROUND)
        rnd = ctx.now // p.period if self.sync else -1
        knew = self._knew(rnd)
        mode = p.mode
        if mode == "push":
            if knew:
                self._contact(ctx, Rumor(rnd))
        elif mode == "pull":
            if not knew:
                self._contact(ctx, PullRequest(rnd))
        else:
            self._contact(ctx, _exchange(knew, rnd))

    def _contact(self, ctx: Context, msg: object) -> None:
        fanout = self.p.fanout
        if fanout == 1:  # NOTE: the common case, without the list (the same draws)
            ctx.send(ctx.random_peer(), msg)
            return
        picked: list[int] = []
        while len(picked) < fanout:  # distinct random peers, in the order drawn
            peer = ctx.random_peer()
            if peer not in picked:
                picked.append(peer)
                ctx.send(peer, msg)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind, rnd = type(msg), msg.round
        if self.sync and ctx.now >= (rnd + 1) * self.p.period:
            raise late_error(ctx.now, rnd, self.p.period)
        # NOTE: in the synchronous phase the state an answer carries is read before the
        # message's own news is merged; since what is learned in round r counts from r + 1,
        # reading it after would give the same answer (``since`` becomes r + 1 > r).
        knew = self._knew(rnd)
        if kind is Rumor:
            self._learn(ctx, rnd + 1)
        elif kind is PullRequest:
            if knew:
                ctx.send(src, Rumor(rnd))
        elif kind is Exchange:
            if msg.informed:
                self._learn(ctx, rnd + 1)
            ctx.send(src, _exchange_reply(self._knew(rnd), rnd))
        elif kind is ExchangeReply and msg.informed:
            self._learn(ctx, rnd + 1)


# NOTE: outside the synchronous phase every exchange has round -1, so its two possible
# messages are made once and shared (messages are immutable; a payload is never copied).
_EXCHANGES = {(k, -1): Exchange(k, -1) for k in (False, True)}
_REPLIES = {(k, -1): ExchangeReply(k, -1) for k in (False, True)}


def _exchange(informed: bool, rnd: int) -> Exchange:
    """``Exchange(informed, rnd)``, shared when ``rnd = -1``."""
    return _EXCHANGES.get((informed, rnd)) or Exchange(informed, rnd)


def _exchange_reply(informed: bool, rnd: int) -> ExchangeReply:
    """``ExchangeReply(informed, rnd)``, shared when ``rnd = -1``."""
    return _REPLIES.get((informed, rnd)) or ExchangeReply(informed, rnd)


CARRIERS = ("Rumor", "Exchange", "ExchangeReply")  # messages that can carry the update
# Order of a node's rows within one tick when the log has no ``seq`` column: a handler's
# (re)start comes first, then the delivery it handles, its observation, its sends.
_TICK_ORDER = {"start": 0, "recover": 0, "join": 0, "deliver": 1, "obs": 2, "send": 3}
_RESTARTS = ("start", "recover", "join")  # the rows after which a node must learn again


def _program_order(events: Mapping[str, Any]) -> np.ndarray:
    """Each row's rank in program order: (time, node, seq), or (time, node, kind) without seq."""
    rank = _program_rank(events)
    return np.arange(len(events["time"]), dtype=np.int64) if rank is None else rank


def _program_rank(events: Mapping[str, Any]) -> np.ndarray | None:
    """:func:`_program_order`, or None when the rows are in program order already."""
    kind = events["kind"]
    if "seq" in events:
        third = np.asarray(events["seq"])
    else:
        third = np.array([_TICK_ORDER.get(k, 4) for k in kind], dtype=np.int64)
    time, node = np.asarray(events["time"]), np.asarray(events["node"])
    if _ascending(time, node, third):  # NOTE: the runner's logs come sorted: no sort needed
        return None
    order = np.lexsort((third, node, time))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _ascending(*keys: np.ndarray) -> bool:
    """Whether rows are already in lexicographic order of ``keys`` (lexsort would keep them:
    it is stable)."""
    if len(keys[0]) < 2:
        return True
    tied = np.ones(len(keys[0]) - 1, dtype=bool)  # row and successor equal on keys so far
    for k in keys:
        a, b = k[:-1], k[1:]
        if (tied & (a > b)).any():
            return False
        tied &= a == b
    return True


def _member(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Which ``values`` are among ``members`` (message ids: ``src * 2**32 + sequence``).

    NOTE: a message id is split into sender and sequence and looked up in a bit table over
    the rectangle they span (a few MB at 10^5 nodes), 30x faster than ``np.isin``'s sort;
    ids that would need a larger table take ``np.isin``.
    """
    if len(values) == 0 or len(members) == 0:
        return np.zeros(len(values), dtype=bool)
    both = np.concatenate([values, members])
    if both.min() >= 0:
        hi, lo = both >> 32, both & 0xFFFFFFFF
        h0, l0 = int(hi.min()), int(lo.min())
        width = int(lo.max()) - l0 + 1
        cells = (int(hi.max()) - h0 + 1) * width
        if cells <= 8 * len(both) + (1 << 20):
            slot = (hi - h0) * width + (lo - l0)
            table = np.zeros(cells, dtype=bool)
            table[slot[len(values):]] = True
            out: np.ndarray = table[slot[: len(values)]]
            return out
    return np.isin(values, members)


def informed_by_delivery(source: int, events: Mapping[str, Any]) -> Iterator[Violation]:
    """Violations of ``informed_by_delivery`` in a gossip run's event log, in (time, node,
    seq) order; the rows may come in any order when the log has ``seq``.

    NOTE: the rows that matter (restarts, informed observations, carrier sends, deliveries)
    are put in (node, program order), and the latest restart, informed observation or good
    delivery before a row at the same node is a running maximum of row indices within the
    node's stretch, so the check costs one sort. A node's program order is its ``seq``
    order, whatever the order of the rows (:func:`_by_node`); where every row of a node
    follows its one (re)start (no churn: the common case) no sort is needed at all
    (:func:`_without_restarts`). The string tests go through
    :func:`raysim.api.protocol.holding`, which reads the runner's string codes rather than
    comparing objects (~30 ns a row), so ``kind``, ``name`` and ``msg_type`` are never
    decoded.
    """
    node = np.asarray(events["node"], dtype=np.int64)
    time = np.asarray(events["time"], dtype=np.int64)
    msg_id = np.asarray(events["msg_id"], dtype=np.int64)
    seq = np.asarray(events["seq"], dtype=np.int64) if "seq" in events else None
    send, deliver = holding(events, "kind", ("send",)), holding(events, "kind", ("deliver",))
    restart = holding(events, "kind", _RESTARTS)
    informed = holding(events, "kind", ("obs",)) & holding(events, "name", ("informed",))
    carrier = send & holding(events, "msg_type", CARRIERS)
    marks = (restart, informed, carrier, deliver)
    bad = None
    if seq is not None:
        bad = _without_restarts(source, node, seq, msg_id, *marks)
    if bad is None:
        rank = _program_rank(events) if seq is None else None
        bad = _with_restarts(source, node, seq, msg_id, rank, *marks)
    if seq is not None and len(bad) > 1:  # (time, node, seq): the canonical order's
        bad = bad[np.lexsort((seq[bad], node[bad], time[bad]))]
    for t, n in zip(time[bad].tolist(), node[bad].tolist(), strict=True):
        yield Violation(
            "informed_by_delivery", t, (n,),
            f"node {n} became informed without a delivery of the update from an informed "
            "node since it (re)started",
        )


def _program_key(
    node: np.ndarray, seq: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray | None:
    """One int64 per row (of ``rows``, ascending, or of every row) ordering the rows by
    (node, seq, row), or None if node or seq is negative or the three do not fit in 63
    bits."""
    nd, sq = (node, seq) if rows is None else (node[rows], seq[rows])
    if not len(nd):
        return np.zeros(0, dtype=np.int64)
    if int(nd.min()) < 0 or int(sq.min()) < 0:
        return None
    s_span = int(sq.max()) + 1
    bits = (len(node) if rows is None else int(rows[-1]) + 1).bit_length()
    if ((int(nd.max()) + 1) * s_span) << bits >= 1 << 63:
        return None
    key: np.ndarray = nd * s_span  # NOTE: in place from here: four passes, no temporaries
    key += sq
    key <<= bits
    key |= np.arange(len(nd), dtype=np.int64) if rows is None else rows
    return key


def _without_restarts(
    source: int, node: np.ndarray, seq: np.ndarray, msg_id: np.ndarray, restart: np.ndarray,
    informed: np.ndarray, carrier: np.ndarray, deliver: np.ndarray,
) -> np.ndarray | None:
    """The violating rows when every row of a node follows its only (re)start, without a
    sort; None for logs where that does not hold (or whose keys do not fit).

    Then "since it (re)started" holds of every row, and a row comes before another at its
    node when its (seq, row) key is smaller: a carrier send is good if an informed
    observation at its node has a smaller key, and an informed observation is fine if a
    good delivery at its node does (the first of each per node, by ``np.minimum.at``).
    """
    rs = np.flatnonzero(restart)
    if np.count_nonzero(seq[rs]) or np.count_nonzero(seq <= 0) != len(rs):
        return None  # some row comes before a restart (seq 0 is a node's first event)
    if len(np.unique(node[rs])) != len(rs):
        return None
    key = _program_key(node, seq)
    if key is None:
        return None
    never = np.iinfo(np.int64).max
    n_nodes = int(node.max()) + 1 if len(node) else 0

    def first(mask: np.ndarray) -> np.ndarray:
        """Per node: the smallest key of the rows where ``mask`` holds (``never`` if none)."""
        out = np.full(n_nodes, never, dtype=np.int64)
        np.minimum.at(out, node[mask], key[mask])
        return out

    good_ids = msg_id[carrier & (first(informed)[node] < key)]
    good = np.zeros(len(node), dtype=bool)
    dv = np.flatnonzero(deliver)
    good[dv] = _member(msg_id[dv], good_ids)
    inf = np.flatnonzero(informed & (node != source))
    out: np.ndarray = inf[first(good)[node[inf]] >= key[inf]]
    return out


def _with_restarts(
    source: int, node: np.ndarray, seq: np.ndarray | None, msg_id: np.ndarray,
    rank: np.ndarray | None, restart: np.ndarray, informed: np.ndarray, carrier: np.ndarray,
    deliver: np.ndarray,
) -> np.ndarray:
    """The violating rows of any log (row indices, ascending): the rows that matter sorted
    by node and program order (``seq`` where the log has it, else ``rank``)."""
    rows = np.flatnonzero(restart | informed | carrier | deliver)
    key = _program_key(node, seq, rows) if seq is not None else None
    if key is not None:
        r = np.sort(key) & ((1 << (int(rows[-1]) + 1).bit_length()) - 1) if len(rows) else rows
    elif seq is not None:
        r = rows[np.lexsort((rows, seq[rows], node[rows]))]
    else:
        # The rows by node, then program order: sorted as one int64, node in the high bits
        # (NOTE: np.sort of int64 is ~3x faster than a stable argsort).
        shift = max(len(node), 1).bit_length()
        low = rows if rank is None else rank[rows]
        packed = np.sort((node[rows] << shift) | low)
        packed &= (1 << shift) - 1
        if rank is None:
            r = packed
        else:
            at_rank = np.empty_like(rank)
            at_rank[rank] = np.arange(len(rank))
            r = at_rank[packed]
    nd, at = node[r], np.arange(len(r))
    first = np.ones(len(r), dtype=bool)
    first[1:] = nd[1:] != nd[:-1]
    stretch = np.maximum.accumulate(np.where(first, at, 0))  # where the row's node begins

    def latest(mask: np.ndarray) -> np.ndarray:
        """At each row of ``r``: the index in ``r`` of the latest row at or before it at
        the same node where ``mask`` holds; -1 if none."""
        last = np.maximum.accumulate(np.where(mask, at, -1))
        return np.where(last >= stretch, last, -1)

    last_rs, last_inf = latest(restart[r]), latest(informed[r])
    # Sends of a carrier by a node informed at that moment (since its last restart).
    good_ids = msg_id[r][carrier[r] & (last_inf >= 0) & (last_inf > last_rs)]
    # Deliveries of those messages.
    dv = deliver[r]
    good = np.zeros(len(r), dtype=bool)
    good[dv] = _member(msg_id[r][dv], good_ids)
    last_dv = latest(good)
    # Every informed observation at a node other than the source needs one since restart.
    q = informed[r] & (nd != source)
    out: np.ndarray = np.sort(r[q & ((last_dv < 0) | (last_dv < last_rs))])
    return out


RUMOR, PULL_REQUEST, EXCHANGE, EXCHANGE_REPLY = range(4)


@register("gossip", presets={})
@register("gossip.push", presets={"mode": "push"})
@register("gossip.pull", presets={"mode": "pull"})
@register("gossip.push_pull", presets={"mode": "push_pull"})
class GossipColumns(BatchProtocol):
    """Rumor dissemination by push, pull or push-pull gossip (Demers et al. 1987), columnar."""

    Params: ClassVar[type[GossipParams]] = GossipParams
    message_types: ClassVar[tuple[str, ...]] = ("Rumor", "PullRequest", "Exchange", "ExchangeReply")
    fields: ClassVar[tuple[str, ...]] = ("informed", "round")
    milestones: ClassVar[tuple[str, ...]] = ("informed",)
    checks = Gossip.checks
    log_columns = Gossip.log_columns
    log_kinds = Gossip.log_kinds
    log_order = Gossip.log_order
    report = Gossip.report
    check = Gossip.check
    metrics = Gossip.metrics
    safety = Gossip.safety

    def __init__(self, params: GossipParams, lo: int, hi: int) -> None:
        super().__init__(params, lo, hi)
        self.p = params
        self.sync = params.phase == "synchronous"
        self.informed = np.zeros(hi - lo, dtype=bool)
        self.since = np.full(hi - lo, NEVER, dtype=np.int64)  # as in :class:`Gossip`

    def _learn(self, ctx: BatchContext, node: np.ndarray, time: np.ndarray, since: Any) -> None:
        li = node - self.lo
        new = ~self.informed[li]
        if new.any():
            self.informed[li[new]] = True
            self.since[li[new]] = np.broadcast_to(since, new.shape)[new]
            ctx.emit(node[new], time[new], "informed", 1.0)

    def _knew(self, li: np.ndarray, rnd: np.ndarray) -> np.ndarray:
        """Per event, the state its exchange uses (see :meth:`Gossip._knew`)."""
        return self.since[li] <= rnd if self.sync else self.informed[li]

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        self.informed[ev.li] = False  # a recovering node has lost the update
        self.since[ev.li] = NEVER
        src = ev.node == self.p.source
        self._learn(ctx, ev.node[src], ev.time[src], 0)
        period, phase = self.p.period, self.p.phase
        if phase == "random":
            first: Any = 1 + ctx.randrange(ev.node, period)
        elif phase == "synchronous":
            first = period - ev.time % period
        else:
            first = period
        ctx.set_timer(ev.node, ev.time + first, ROUND)

    def on_timer(self, ctx: BatchContext, ev: BatchEvents) -> None:
        ctx.set_timer(ev.node, ev.time + self.p.period, ROUND)
        rnd = ev.time // self.p.period if self.sync else np.full(len(ev.li), -1, dtype=np.int64)
        knew = self._knew(ev.li, rnd)
        mode = self.p.mode
        if mode == "push":
            self._contact(ctx, ev.node[knew], ev.time[knew], RUMOR, 0.0, rnd[knew])
        elif mode == "pull":
            self._contact(ctx, ev.node[~knew], ev.time[~knew], PULL_REQUEST, 0.0, rnd[~knew])
        else:
            self._contact(ctx, ev.node, ev.time, EXCHANGE, knew.astype(np.float64), rnd)

    def _contact(
        self,
        ctx: BatchContext,
        node: np.ndarray,
        time: np.ndarray,
        mtype: int,
        flag: Any,
        rnd: np.ndarray,
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
            round=np.repeat(rnd.astype(np.float64), fanout),
        )

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        t, has = ev.mtype, ev.fields["informed"] > 0
        rnd = ev.fields["round"].astype(np.int64)
        if self.sync:
            late = ev.time >= (rnd + 1) * self.p.period
            if late.any():
                i = int(np.argmax(late))
                raise late_error(int(ev.time[i]), int(rnd[i]), self.p.period)
        learn = (t == RUMOR) | (((t == EXCHANGE) | (t == EXCHANGE_REPLY)) & has)
        self._learn(ctx, ev.node[learn], ev.time[learn], rnd[learn] + 1)
        knew = self._knew(ev.li, rnd)  # after merging: see the NOTE in Gossip.on_message
        answer = (t == PULL_REQUEST) & knew
        ctx.send(
            ev.node[answer],
            ev.time[answer],
            ev.src[answer],
            RUMOR,
            round=rnd[answer].astype(np.float64),
        )
        ex = t == EXCHANGE
        ctx.send(
            ev.node[ex],
            ev.time[ex],
            ev.src[ex],
            EXCHANGE_REPLY,
            informed=knew[ex].astype(np.float64),
            round=rnd[ex].astype(np.float64),
        )
