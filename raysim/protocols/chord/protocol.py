"""Chord: a ring of m-bit identifiers, finger tables, stabilization, lookups under churn.

Implements Stoica, Morris, Karger, Kaashoek and Balakrishnan, "Chord: a scalable
peer-to-peer lookup service for Internet applications" (SIGCOMM 2001), and Algorithms 8-10 of
the course notes. Identifiers come from the consistent-hash ring (:mod:`raysim.values.ring`; see
:mod:`raysim.protocols.chord.ring`); a node owns the keys in ``(predecessor, self]``.

Theory of operation
-------------------
*Pointers.* Each node keeps a predecessor, a list of ``r`` successors and ``m`` fingers
(``finger[i]`` = successor of ``id + 2^i``). The distinct fingers and the current successor
form one routing table sorted by clockwise distance, so the closest preceding finger of a
key is one bisection. (Routing through the whole successor list as well, as in the 2003
journal version, would shorten the last steps; here the list serves to route around
failures, as in the SIGCOMM paper, so that path lengths compare with its ½·log₂N.)

*Lookups* (``find_successor``): if the key lies in ``(n, successor]`` the answer is the
successor, else ask the closest preceding node. ``mode = "iterative"``: the origin asks each
hop (``Query``) and gets closer nodes (``Next``) or the final successor list (``Done``), then
probes the owner. ``mode = "recursive"``: each hop forwards the ``Lookup`` and waits for an
``Ack``; the owner answers the origin (``Found``). A request unanswered after
``hop_timeout`` marks the hop dead (it is dropped from the tables and suspected for
``suspect_ttl``) and the lookup is routed around it, through the next-best finger or
successor; after ``max_retries`` timeouts the lookup gives up. A recursive origin also gives
up after ``lookup_deadline``.

*Maintenance*, each on its own timer with a period drawn uniformly in [0.5, 1.5] × its
parameter (0 = off; ``intervals = "exponential"``: exponential with that mean):
``stabilize`` (ask the successor for its predecessor and successor list, adopt a closer
successor, ``notify`` it; a closer successor is asked again at once, and a dead one is
replaced by the next in the list, or the nearest finger if the list is exhausted),
``fix_fingers`` (refresh the next finger by a lookup — answered by the key's predecessor,
without visiting the owner; the fingers the answer also covers are filled from it; with
``fix_all_fingers`` a round refreshes every finger, one lookup after the other, as the
simulator of the paper's §6.5 churn experiment does), ``check_predecessor`` (ping it;
forget it on timeout).

*Keys.* With ``keys_per_node = k`` the system stores ``k · N`` keys (integers, placed by
their SplitMix64 hash). When a node learns of a closer predecessor (notify), it hands the
keys outside its new range ``(pred, self]`` to that node — the only keys that move on a
join, and they move only to the joining node (Algorithm 8); the observation
``keys_moved`` (value = count, peer = receiver) records it. A leaving node hands all its
keys to its successor; a failed node's keys are lost (no replication).

*Start-up.* ``bootstrap = "ideal"``: every node present at time 0 starts with exact
pointers for the ring of all ``network.nodes`` nodes (nodes that are not actually up are
then found dead by timeouts, like failures). ``bootstrap = "join"``: node 0 creates the
ring and the others join through it at a uniform time in ``[1, join_spread]``. Churn joins
(``on_join``) always run the join protocol through the bootstrap node they are given
(another random node after a failed attempt); recovering nodes rejoin through the
successors they kept in ``ctx.storage``. A node whose join completes emits ``joined``
(value = ticks since its join began, peer = its first successor).

*Workload and log.* Every active node issues lookups for uniformly random identifiers (or
random stored keys) at ``lookup_rate`` per 1000 ticks, from ``lookup_start``. A finished
lookup emits three observations at its origin, all with ``peer`` = the node it ended at
(-1 if it gave up) and ``ref`` = the key: ``lookup`` (value = hops), ``lookup_latency``
(ticks) and ``lookup_timeouts``. Hops count the routing steps to the key's predecessor
(0 when the origin is that predecessor), the path length of the Chord paper. With
``snapshot = T`` every active node emits ``ring`` (peer = successor, value = predecessor or
-1) and ``keys`` (value = keys held) at multiples of T; with ``snapshot_fingers`` also one
``finger`` per finger (value = i, peer = the node in ``finger[i]``, -1 if none).

*Identifiers.* ``placement = "seed"`` (default) draws the node identifiers from the run's
seed, so each seed of an experiment is another ring; ``"index"`` hashes the node index (the
same ring for every seed); ``ids = [...]`` lists them (``m`` may then be as small as 1, for
the paper's 3-bit examples), and ``keys = [...]`` lists the stored key identifiers. See
:mod:`raysim.protocols.chord.ring`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, Violation, register
from raysim.protocols.chord import messages as cm
from raysim.protocols.chord.lookup import FINGER, JOIN, USER, ChordRouting, PendingLookup
from raysim.protocols.chord.ring import check_ids, ideal_ring, key_positions, placement_ids
from raysim.protocols.chord.safety import CHECK, LIFECYCLE_KINDS, lookup_owner_violations


class ChordParams(Params):
    """Parameters of Chord (times in ticks; 0 switches a maintenance task off)."""

    mode: Literal["iterative", "recursive"] = Field("iterative", description="lookup routing")
    m: int = Field(48, ge=1, le=62, description="identifier bits")
    placement: Literal["seed", "index"] = Field(
        "seed", description="node identifiers drawn from the run seed, or hashed from the index"
    )
    ids: list[int] | None = Field(None, description="explicit node identifiers, one per node")
    keys: list[int] | None = Field(
        None, description="explicit stored key identifiers (instead of keys_per_node)"
    )
    r: int = Field(8, ge=1, le=64, description="successor list length")
    bootstrap: Literal["ideal", "join"] = Field(
        "ideal", description="nodes at time 0: exact pointers, or join through node 0"
    )
    join_spread: int = Field(10_000, ge=1, description="bootstrap=join: joins spread over")
    stabilize: int = Field(2000, ge=0, description="mean stabilize period")
    fix_fingers: int = Field(5000, ge=0, description="mean fix_fingers period")
    intervals: Literal["uniform", "exponential"] = Field(
        "uniform", description="maintenance periods: uniform in [0.5, 1.5] x the mean, or "
        "exponential with that mean"
    )
    fix_all_fingers: bool = Field(
        False, description="each fix_fingers round refreshes every finger, one lookup after "
        "another (the simulator of Stoica et al. 2001, §6.5), not just the next one"
    )
    check_predecessor: int = Field(2000, ge=0, description="mean check_predecessor period")
    hop_timeout: int = Field(500, ge=1, description="a request unanswered this long failed")
    max_retries: int = Field(3, ge=0, description="timeouts a lookup routes around")
    lookup_deadline: int = Field(10_000, ge=1, description="recursive: origin gives up after")
    settle: int = Field(
        30_000, ge=0,
        description="safety check: ticks without a membership change before a lookup must "
        "end at the key's owner",
    )
    lookup_rate: float = Field(0.1, ge=0.0, description="lookups per node per 1000 ticks")
    lookup_start: int = Field(0, ge=0, description="no lookups before this time")
    keys_per_node: int = Field(0, ge=0, description="stored keys = keys_per_node * nodes")
    suspect_ttl: int = Field(20_000, ge=0, description="a timed-out node is avoided this long")
    join_retry: int = Field(2000, ge=1, description="wait before retrying a failed join")
    snapshot: int = Field(0, ge=0, description="emit ring/keys observations every T (0 = off)")
    snapshot_fingers: bool = Field(False, description="snapshots also emit the finger table")


# Phases as data: which transitions are legal, and what each phase handles.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("new", "ideal"): "active",  # exact pointers at time 0
    ("new", "create"): "active",  # the first node of a ring
    ("new", "wait"): "waiting",  # bootstrap=join: join a little later
    ("new", "join"): "joining",
    ("waiting", "join"): "joining",
    ("joining", "join"): "joining",  # a retry
    ("joining", "create"): "active",  # nobody else is up
    ("joining", "joined"): "active",
    ("waiting", "leave"): "left",
    ("joining", "leave"): "left",
    ("active", "leave"): "left",
}
ALL_TIMERS = frozenset(
    {"stabilize", "fix_fingers", "check_pred", "lookup", "snapshot", "timeout", "deadline"}
)
# phase -> (message roles handled, timer kinds handled); anything else is ignored
PHASES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "new": (frozenset(), frozenset()),
    "waiting": (frozenset(), frozenset({"join"})),
    "joining": (frozenset({"reply", "data"}), frozenset({"join", "timeout", "deadline"})),
    "active": (frozenset({"route", "reply", "ring", "data"}), ALL_TIMERS),
    "left": (frozenset(), frozenset()),
}


def _handlers() -> dict[type, tuple[str, int, str]]:
    """message class -> (handler method, family index, role)."""
    out: dict[type, tuple[str, int, str]] = {
        cm.GetPred: ("_on_get_pred", 0, "ring"), cm.PredReply: ("_on_pred_reply", 0, "reply"),
        cm.Notify: ("_on_notify", 0, "ring"), cm.Ping: ("_on_ping", 0, "ring"),
        cm.Pong: ("_on_reply", 0, "reply"), cm.Departing: ("_on_departing", 0, "ring"),
        cm.Keys: ("_on_keys", 0, "data"),
    }
    for f, fam in enumerate(cm.FAMILIES):
        for cls, name, role in (
            (fam.Lookup, "_on_lookup", "route"), (fam.Ack, "_on_reply", "reply"),
            (fam.Found, "_on_found", "reply"), (fam.Failed, "_on_failed", "reply"),
            (fam.Query, "_on_query", "route"), (fam.Next, "_on_next", "reply"),
            (fam.Done, "_on_done", "reply"), (fam.Probe, "_on_probe", "route"),
            (fam.Alive, "_on_alive", "reply"),
        ):
            out[cls] = (name, f, role)
    return out


@register("chord")
class Chord(ChordRouting, Protocol):
    """Chord lookups with stabilization under churn (Stoica et al. 2001)."""

    Params: ClassVar[type[ChordParams]] = ChordParams
    report: ClassVar[str | None] = "raysim.analysis.byzantine:chord"  # + malicious nodes
    checks: ClassVar[tuple[str, ...]] = (CHECK,)
    # The check reads the chord_id and lookup observations and the lifecycle rows only, so
    # it runs on observation-only logs too, and reads none of a full log's message rows.
    log_needs: ClassVar[str] = "observations"
    log_columns: ClassVar[tuple[str, ...] | None] = ("value_int",)
    log_kinds: ClassVar[tuple[str, ...] | None] = ("obs", *LIFECYCLE_KINDS)
    adversaries: ClassVar[dict[str, str]] = {
        "wrong": "raysim.protocols.chord.adversaries:WrongOwner",
        "drop": "raysim.protocols.chord.adversaries:DropLookups",
    }
    HANDLERS: ClassVar[dict[type, tuple[str, int, str]]] = _handlers()

    def __init__(self, params: ChordParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.mask = (1 << params.m) - 1
        self.phase = "new"
        self.ids: tuple[int, ...] = ()
        self.id = -1
        self.pred: int | None = None
        self.succs: list[int] = []
        self.fingers: list[int | None] = [None] * params.m
        self.next_finger = 0
        self.fixing = False  # fix_all_fingers: a round's chain of finger lookups is under way
        self.route_d: list[int] = []  # routing table: clockwise distances, ascending
        self.route_n: list[int] = []  # ... and the nodes at them
        self.built: tuple[int | None, ...] = ()  # what the table was built from (_rebuild)
        self.keys: list[int] = []  # identifiers of the stored keys held, sorted
        self.suspect: dict[int, int] = {}  # node -> suspected until
        self.pending: dict[int, tuple[str, int, Any, int]] = {}  # req -> (what, to, data, timer)
        self.lookups: dict[int, PendingLookup] = {}
        self.seq = 0
        self.contact = -1  # who a join goes through
        self.join_t0 = 0  # when this session's join began
        self._dispatch = _dispatch(type(self))
        self._handles = self._dispatch[self.phase]  # this phase's row of the table

    # --- configuration checks and run metrics ----------------------------------------------

    @classmethod
    def check(cls, params: ChordParams, n_nodes: int) -> None:
        """Every node needs its own identifier: explicit ``ids`` must be distinct m-bit
        values, one per node; index-hashed ones must not collide; seeded ones need
        ``n_nodes <= 2^m``. Explicit ``keys`` must be m-bit and exclude ``keys_per_node``."""
        if params.ids is not None:
            check_ids(params.ids, params.m, n_nodes)
        elif params.placement == "index":
            ideal_ring(n_nodes, params.m)  # raises ValueError naming two nodes that collide
        elif n_nodes > 1 << params.m:
            raise ValueError(f"m = {params.m} bits holds {1 << params.m} identifiers, "
                             f"fewer than network.nodes ({n_nodes})")
        if params.keys is not None:
            if params.keys_per_node:
                raise ValueError("give keys or keys_per_node, not both")
            bad = [k for k in params.keys if not 0 <= k < 1 << params.m]
            if bad:
                raise ValueError(f"keys: identifier {bad[0]} is outside 0..{(1 << params.m) - 1}")

    @classmethod
    def metrics(cls, params: ChordParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages sent per node and per node per 1000 ticks."""
        n, end = stats["nodes"], max(1, stats.get("end_time", 1))
        return {"messages_per_node": stats["sent"] / n,
                "messages_per_node_per_s": stats["sent"] / n / (end / 1000.0)}

    @classmethod
    def safety(cls, params: ChordParams, events: Mapping[str, Any]) -> Iterator[Violation]:
        """``stable_lookup_owner`` (:mod:`raysim.protocols.chord.safety`) over the log."""
        for v in lookup_owner_violations(params.settle, events):
            yield Violation(v.check, v.time, (v.node,), v.detail)

    # --- phases -----------------------------------------------------------------------------

    def _goto(self, event: str) -> None:
        try:
            self.phase = TRANSITIONS[(self.phase, event)]
            self._handles = self._dispatch[self.phase]
        except KeyError:
            raise RuntimeError(
                f"chord node {self.node}: illegal event {event!r} in phase {self.phase!r}"
            ) from None

    def _place(self, ctx: Context) -> None:
        """Every node's identifier (the same table at every node of the run)."""
        p = self.p
        self.ids = placement_ids(ctx.n_nodes, p.m, p.placement, ctx.seed, p.ids)
        self.id = self.ids[self.node]
        ctx.emit("chord_id", self.id)  # the log names the ring (the safety check reads it)

    def on_start(self, ctx: Context) -> None:
        self._place(ctx)
        if self.p.bootstrap == "ideal":
            ring = ideal_ring(ctx.n_nodes, self.p.m, self.ids)
            self.pred = ring.predecessor(self.node)
            self.succs = ring.successors(self.node, self.p.r)
            self.fingers = list(ring.fingers(self.node))
            if self._key_set(ctx):
                self.keys = ring.keys_of(self.node, self._key_set(ctx))
            self._goto("ideal")
            self._activate(ctx)
        elif self.node == 0:
            self._create(ctx, with_keys=True)
        else:
            self._goto("wait")
            self.contact = 0
            ctx.set_timer(1 + ctx.rng.randrange(self.p.join_spread), "join")

    def on_join(self, ctx: Context, bootstrap: int | None) -> None:
        self._place(ctx)
        if bootstrap is None:
            self._create(ctx, with_keys=False)
        else:
            self.contact = bootstrap
            self._join(ctx)

    def on_recover(self, ctx: Context) -> None:
        kept = [n for n in ctx.storage.get("succs", ()) if n != self.node]
        self.on_join(ctx, kept[0] if kept else ctx.random_peer())

    def on_leave(self, ctx: Context) -> None:
        if self.phase == "active":
            succ = self.succs[0] if self.succs else None
            pred = -1 if self.pred is None else self.pred
            if succ is not None:
                ctx.send(succ, cm.Departing(pred, tuple(self.succs)))
                if self.keys:
                    self._give_keys(ctx, succ, self.keys)
                    self.keys = []
            if self.pred is not None and self.pred != succ:
                ctx.send(self.pred, cm.Departing(pred, tuple(self.succs)))
        self._goto("leave")

    def _create(self, ctx: Context, with_keys: bool) -> None:
        self.pred, self.succs = None, []
        if with_keys and self._key_set(ctx):
            self.keys = list(self._key_set(ctx))
        self._goto("create")
        ctx.emit("joined", 0.0, peer=self.node)
        self._activate(ctx)

    def _join(self, ctx: Context) -> None:
        if self.phase != "joining":
            self.join_t0 = ctx.now
        self._goto("join")
        self._lookup(ctx, self.id, JOIN, via=self.contact)

    def _activate(self, ctx: Context) -> None:
        """Start the periodic tasks of an active node."""
        self._rebuild()
        self.fixing = False
        p = self.p
        for period, tag in ((p.stabilize, "stabilize"), (p.fix_fingers, "fix_fingers"),
                            (p.check_predecessor, "check_pred")):
            if period:
                ctx.set_timer(1 + ctx.rng.randrange(period), tag)
        if p.lookup_rate > 0:
            ctx.set_timer(max(0, p.lookup_start - ctx.now) + self._gap(ctx), "lookup")
        if p.snapshot:
            ctx.set_timer(p.snapshot - ctx.now % p.snapshot, "snapshot")

    # --- dispatch ---------------------------------------------------------------------------

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        hit = self._handles[type(msg)]  # KeyError: not a Chord message
        if hit is None:  # not handled in this phase
            return
        if self.suspect:
            self.suspect.pop(src, None)  # it answered: alive after all
        hit[0](self, ctx, src, msg, hit[1])

    def on_timer(self, ctx: Context, tag: Any) -> None:
        kind = tag[0] if isinstance(tag, tuple) else tag
        if kind not in PHASES[self.phase][1]:
            return
        if kind == "timeout":
            self._on_timeout(ctx, tag[1])
        elif kind == "deadline":
            lk = self.lookups.pop(tag[1], None)
            if lk is not None:
                self._finish(ctx, lk, -1)
        elif kind == "stabilize":
            self._every(ctx, self.p.stabilize, kind)
            self._stabilize(ctx)
        elif kind == "fix_fingers":
            self._every(ctx, self.p.fix_fingers, kind)
            if not self.fixing:  # fix_all_fingers: a round still under way is not restarted
                self.next_finger = 0 if self.p.fix_all_fingers else self.next_finger
                self._fix_fingers(ctx)
        elif kind == "check_pred":
            self._every(ctx, self.p.check_predecessor, kind)
            if self.pred is not None:
                ctx.send(self.pred, cm.Ping(self._expect(ctx, self.pred, "ping", None)))
        elif kind == "lookup":
            ctx.set_timer(self._gap(ctx), "lookup")
            n = len(self._key_set(ctx))
            key = (self._key_set(ctx)[ctx.rng.randrange(n)] if n
                   else ctx.rng.next_u64() >> (64 - self.p.m))
            self._lookup(ctx, key, USER)
        elif kind == "snapshot":
            ctx.set_timer(self.p.snapshot, "snapshot")
            succ = self.succs[0] if self.succs else self.node
            ctx.emit("ring", -1.0 if self.pred is None else float(self.pred), peer=succ)
            ctx.emit("keys", float(len(self.keys)))
            if self.p.snapshot_fingers:
                for i, f in enumerate(self.fingers):
                    ctx.emit("finger", float(i), peer=-1 if f is None else f)
        elif kind == "join":
            self._join(ctx)

    # --- helpers ----------------------------------------------------------------------------

    def _every(self, ctx: Context, period: int, tag: str) -> None:
        u = ctx.rng.random()
        if self.p.intervals == "exponential":
            ctx.set_timer(max(1, round(-math.log1p(-u) * period)), tag)
        else:
            ctx.set_timer(max(1, round(period * (0.5 + u))), tag)

    def _gap(self, ctx: Context) -> int:
        """Time to the next lookup of this node: exponential, mean 1000 / lookup_rate."""
        return max(1, round(-math.log1p(-ctx.rng.random()) * 1000.0 / self.p.lookup_rate))

    def _key_set(self, ctx: Context) -> tuple[int, ...]:
        """The sorted identifiers of the stored keys (listed, or ``keys_per_node`` · N hashed)."""
        if self.p.keys is not None:
            return _listed_keys(tuple(self.p.keys))
        return key_positions(self.p.keys_per_node * ctx.n_nodes, self.p.m)

    # --- stabilization ----------------------------------------------------------------------

    def _stabilize(self, ctx: Context) -> None:
        if not self.succs:
            if self.pred is None:
                return  # alone
            self.succs = [self.pred]  # a ring of two: the predecessor is the successor too
            self._rebuild()
        ctx.send(self.succs[0], cm.GetPred(self._expect(ctx, self.succs[0], "stabilize", None)))

    def _on_get_pred(self, ctx: Context, src: int, msg: cm.GetPred, fam: int) -> None:
        pred = -1 if self.pred is None else self.pred
        ctx.send(src, cm.PredReply(msg.req, pred, tuple(self.succs)))

    def _on_pred_reply(self, ctx: Context, src: int, msg: cm.PredReply, fam: int) -> None:
        if self._answered(ctx, msg.req) is None:
            return
        now, mask, ids, me, suspect = ctx.now, self.mask, self.ids, self.id, self.suspect
        succs = [src]
        for s in msg.succs:
            if s != self.node and s not in succs and not (s in suspect and self._suspected(s, now)):
                succs.append(s)
        x = msg.pred
        if (x >= 0 and x != self.node and not (x in suspect and self._suspected(x, now))
                and ((ids[x] - me) & mask) < ((ids[src] - me) & mask)):
            succs.insert(0, x)  # x joined between us and our successor
        first = self.succs[0] if self.succs else -1
        self.succs = succs[: self.p.r]
        ctx.storage["succs"] = self.succs
        ctx.send(self.succs[0], cm.Notify())
        if self.succs[0] != first:
            self._rebuild()
            if self.succs[0] == x:
                # NOTE: a closer successor: ask it at once rather than a period later, so a
                # pointer that overshoots by k nodes is repaired in k round trips, not k periods
                self._stabilize(ctx)

    def _on_notify(self, ctx: Context, src: int, msg: cm.Notify, fam: int) -> None:
        if src == self.node:
            return
        mask, ids, me = self.mask, self.ids, self.id
        if self.pred is not None and not (
            0 < ((ids[src] - ids[self.pred]) & mask) < ((me - ids[self.pred]) & mask)
        ):
            return
        self.pred = src
        if self.keys:  # Algorithm 8: the keys outside (src, self] move to src, and only those
            lo, width = ids[src], (me - ids[src]) & mask
            stay = [k for k in self.keys if ((k - lo - 1) & mask) < width]
            if len(stay) < len(self.keys):
                moved = [k for k in self.keys if ((k - lo - 1) & mask) >= width]
                self.keys = stay
                self._give_keys(ctx, src, moved)

    def _give_keys(self, ctx: Context, dst: int, keys: list[int]) -> None:
        ctx.send(dst, cm.Keys(tuple(keys)))
        ctx.emit("keys_moved", float(len(keys)), peer=dst)

    def _on_keys(self, ctx: Context, src: int, msg: cm.Keys, fam: int) -> None:
        self.keys = sorted(self.keys + list(msg.keys))

    def _on_ping(self, ctx: Context, src: int, msg: cm.Ping, fam: int) -> None:
        ctx.send(src, cm.Pong(msg.req))

    def _on_reply(self, ctx: Context, src: int, msg: Any, fam: int) -> None:
        self._answered(ctx, msg.req)  # Pong, Ack: the request succeeded

    def _on_departing(self, ctx: Context, src: int, msg: cm.Departing, fam: int) -> None:
        was_succ = bool(self.succs) and self.succs[0] == src
        was_pred = self.pred == src
        self._forget(ctx, src)
        if was_succ:
            heirs = [s for s in msg.succs if s not in (src, self.node)]
            self.succs = list(dict.fromkeys(heirs + self.succs))[: self.p.r]
            self._rebuild()
        if was_pred and msg.pred not in (-1, self.node):
            self.pred = msg.pred

    def _fix_fingers(self, ctx: Context) -> None:
        """Refresh the next finger whose start lies beyond the successor."""
        m, i = self.p.m, self.next_finger
        succ = self.succs[0] if self.succs else self.node
        end = self._reach_end(i, succ)
        self.fingers[i:end] = [succ] * (end - i)
        i = end
        if i >= m:
            self.next_finger = 0
            self.fixing = False
            self._rebuild()
            return
        self.fixing = self.p.fix_all_fingers
        self._lookup(ctx, (self.id + (1 << i)) & self.mask, FINGER, arg=i)

    def _reach_end(self, i: int, node: int) -> int:
        """The first finger index ``j >= i`` whose start ``id + 2^j`` lies beyond
        ``(self, node]`` (``m`` if none): ``node`` is the successor of every finger start
        from ``i`` up to it that lies in reach.

        NOTE: ``id + 2^j`` lies in ``(self, node]`` iff ``2^j - 1 <= d``, ``d`` the
        clockwise distance to ``node`` less one, i.e. iff ``j < (d + 1).bit_length()``: the
        loop over the fingers in one step."""
        d = (self.ids[node] - self.id - 1) & self.mask
        return max(i, min(self.p.m, (d + 1).bit_length()))

    def _completed(self, ctx: Context, lk: PendingLookup, end: int) -> None:
        """A fix_fingers lookup sets its finger (and those the answer also covers); a join
        lookup gives the successor, or a retry through another node."""
        if lk.purpose == FINGER:
            i, m = lk.arg, self.p.m
            if self.phase != "active":
                self.fixing = False
                return
            if end < 0:
                i += 1
            else:
                stop = self._reach_end(i + 1, end)
                self.fingers[i:stop] = [end] * (stop - i)
                i = stop
                self._rebuild()
            self.next_finger = i if i < m else 0
            if self.fixing:  # fix_all_fingers: on to the next finger of this round
                if i < m:
                    self._fix_fingers(ctx)
                else:
                    self.fixing = False
        elif self.phase == "joining":
            if end < 0 or end == self.node:
                self.contact = ctx.random_peer()
                ctx.set_timer(self.p.join_retry, "join")
                return
            self.succs = [end]
            self._goto("joined")
            ctx.emit("joined", float(ctx.now - self.join_t0), peer=end)
            self._activate(ctx)
            self._stabilize(ctx)



Dispatch = dict[str, dict[type, tuple[Any, int] | None]]
_DISPATCH: dict[type, Dispatch] = {}


def _dispatch(cls: type[Chord]) -> Dispatch:
    """phase -> message class -> (``cls``'s handler function, family index), or None where
    the phase ignores that class: :attr:`Chord.HANDLERS` and :data:`PHASES` resolved once
    per class (a subclass's overriding handlers included), not on every message."""
    table = _DISPATCH.get(cls)
    if table is None:
        table = _DISPATCH[cls] = {
            phase: {
                kind: (getattr(cls, name), fam) if role in roles else None
                for kind, (name, fam, role) in cls.HANDLERS.items()
            }
            for phase, (roles, _) in PHASES.items()
        }
    return table


@lru_cache(maxsize=8)
def _listed_keys(keys: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(set(keys)))


__all__ = ["Chord", "ChordParams"]
