"""The deterministic discrete-event core: a block of simulated nodes in one process.

Theory of operation
-------------------
A :class:`Shard` hosts nodes ``lo..hi-1``. Global time advances in *windows* ``[start, end)``
no longer than the network's minimum delay (conservative lookahead): a message sent inside
a window cannot arrive inside it, so at the start of a window every delivery due in it is
already known. :meth:`Shard.advance` gathers the window's due events (node lifecycle events,
deliveries, timers), sorts them with numpy by the explicit total order

    (time, priority, node, id, copy)      priority: lifecycle 0 < delivery 1 < timer 2
    id: lifecycle sequence, message id (sender · 2^32 + sender's sequence) or timer id

and calls the handlers in that order. A timer that a handler sets to fire inside the
current window goes to a small heap merged into the loop by the same key. Nothing in the
key depends on which shard holds a node, how batches were cut or the order Ray delivered
them, so any layout gives the same per-node history and therefore the same event log.

What the loop does per event is one Python call into the protocol; everything else (message
ids, routing, fault decisions, logging of sends, deliveries and timers) is done on whole
numpy columns per window.
"""

from __future__ import annotations

import heapq
import traceback
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysim.errors import ProtocolError
from raysim.eventlog import EventLog
from raysim.faults import Faults, parse_node_set
from raysim.protocol import Protocol, lookup
from raysim.rng import NodeRng, derive, uniform_array
from raysim.router import SEQ_BITS, Messages, RouteStats, Router
from raysim.schema import CORRUPT, CRASH, DELIVER, DROP, OBS, RECOVER, START, TIMER
from raysim.topology import Topology

NEVER = np.iinfo(np.int64).max
_RNG_STREAM = 0x5EED
_CRASH_STREAM = 0xC4A5

P_NODE, P_MSG, P_TIMER = 0, 1, 2


@dataclass(frozen=True)
class RunSpec:
    """Everything a shard needs to know about the run (small, picklable)."""

    run_id: str
    seed: int
    n_nodes: int
    protocol: str
    params: dict[str, Any]
    topology: str
    degree: int
    delay: Any
    jitter: int
    faults: Faults
    duration: int
    stop_when: str | None
    log_level: str
    batch_rows: int

    @property
    def lookahead(self) -> int:
        """The window length: the smallest delay any message can have."""
        return max(1, int(self.delay.lower_bound))


def lifecycle_schedule(spec: RunSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All nodes' lifecycle events (time, node, kind, seq): start at 0, then crashes.

    A ``fraction`` crash picks exactly round(fraction·N) nodes, those with the smallest
    hash of (seed, crash index, node): a seeded choice independent of the layout.
    """
    n = spec.n_nodes
    times = [np.zeros(n, dtype=np.int64)]
    nodes = [np.arange(n, dtype=np.int64)]
    kinds = [np.full(n, START, dtype=np.int64)]
    seqs = [np.zeros(n, dtype=np.int64)]
    for i, c in enumerate(spec.faults.crashes):
        if c.node is not None:
            who = np.array([c.node], dtype=np.int64)
        elif c.nodes is not None:
            who = np.flatnonzero(parse_node_set(c.nodes, n, f"faults.crashes.{i}.nodes"))
        else:
            assert c.fraction is not None
            k = round(c.fraction * n)
            ids = np.arange(n, dtype=np.int64)
            h = uniform_array(derive(spec.seed, _CRASH_STREAM, i), ids)
            who = np.sort(np.argsort(h, kind="stable")[:k]).astype(np.int64)
        for at, kind, s in ((c.at, CRASH, 2 * i + 1), (c.recover_at, RECOVER, 2 * i + 2)):
            if at is None:
                continue
            times.append(np.full(len(who), at, dtype=np.int64))
            nodes.append(who)
            kinds.append(np.full(len(who), kind, dtype=np.int64))
            seqs.append(np.full(len(who), s, dtype=np.int64))
    return (np.concatenate(times), np.concatenate(nodes), np.concatenate(kinds), np.concatenate(seqs))


class ShardContext:
    """The :class:`~raysim.protocol.Context` the engine hands to handlers.

    One object serves every node of a shard; the engine sets ``node`` and ``now`` before
    each call. NOTE: sends and timers are appended to plain lists (no per-call objects) and
    turned into numpy columns once per window; this is the engine's hot path.
    """

    __slots__ = (
        "_li", "_out_dst", "_out_msg", "_out_seq", "_out_src", "_out_time", "_shard",
        "n_nodes", "node", "now",
    )

    def __init__(self, shard: Shard) -> None:
        self._shard = shard
        self.n_nodes = shard.spec.n_nodes
        self.node = -1
        self.now = 0
        self._li = -1
        self._out_time: list[int] = []
        self._out_src: list[int] = []
        self._out_dst: list[int] = []
        self._out_seq: list[int] = []
        self._out_msg: list[Any] = []

    def send(self, dst: int, msg: object) -> None:
        """Send ``msg`` to ``dst`` (routed at the end of the window)."""
        seqs = self._shard.send_seq
        li = self._li
        s = seqs[li]
        seqs[li] = s + 1
        self._out_time.append(self.now)
        self._out_src.append(self.node)
        self._out_dst.append(dst)
        self._out_seq.append(s)
        self._out_msg.append(msg)

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        """Fire ``on_timer(ctx, tag)`` after ``delay`` ticks; returns the timer id."""
        if delay < 0:
            raise ValueError(f"timer delay must be >= 0 ticks, got {delay}")
        return self._shard.add_timer(self._li, self.node, self.now + delay, tag)

    def cancel_timer(self, timer_id: int) -> None:
        """Cancel a pending timer of this node."""
        self._shard.cancelled.add((self.node, timer_id))

    def emit(self, name: str, value: float = 1.0) -> None:
        """Record an observation."""
        self._shard.observe(self.node, self.now, name, value)

    @property
    def rng(self) -> NodeRng:
        """This node's random stream."""
        return self._shard.rngs[self._li]

    @property
    def peers(self) -> Sequence[int]:
        """This node's neighbours."""
        return self._shard.topology.peers(self.node)

    def random_peer(self) -> int:
        """A uniformly random neighbour (never the node itself)."""
        return self._shard.topology.random_peer(self.node, self._shard.rngs[self._li].next_u64())

    @property
    def storage(self) -> dict[str, Any]:
        """Stable storage that survives crash-recovery."""
        return self._shard.storage[self._li]


@dataclass
class StepInfo:
    """What the coordinator learns from a shard after a window."""

    next_time: int  # earliest pending local event (NEVER if none)
    out_min_time: list[int]  # per destination shard, the earliest delivery sent there
    done: bool  # every live local node has emitted the stop observation


class Shard:
    """A block of simulated nodes with its pending events, handlers and log."""

    def __init__(
        self,
        spec: RunSpec,
        index: int,
        bounds: np.ndarray,
        log_path: Path | None,
        route_here: bool = True,
    ) -> None:
        self.spec = spec
        self.index = index
        self.bounds = bounds
        self.lo, self.hi = int(bounds[index]), int(bounds[index + 1])
        n_local = self.hi - self.lo
        self.log = EventLog(log_path, spec.log_level, spec.batch_rows)
        self.router = (
            Router(spec.seed, spec.n_nodes, spec.delay, spec.jitter, spec.faults, bounds, self.log)
            if route_here
            else None
        )
        self.topology = Topology(spec.topology, spec.seed, spec.n_nodes, spec.degree, self.lo, self.hi)
        proto = lookup(spec.protocol)
        self.proto_cls: type[Protocol] = proto.cls
        self.params = proto.make_params(spec.params)
        self.protos: list[Protocol | None] = [None] * n_local
        self.alive = [False] * n_local
        self.epoch = [0] * n_local
        self.send_seq = [0] * n_local
        self.timer_seq = [0] * n_local
        self.storage: list[dict[str, Any]] = [{} for _ in range(n_local)]
        rng_key = derive(spec.seed, _RNG_STREAM)
        self.rngs = [NodeRng(derive(rng_key, node)) for node in range(self.lo, self.hi)]
        self.cancelled: set[tuple[int, int]] = set()
        self._type_codes: dict[type, int] = {}
        self.ctx = ShardContext(self)
        # Pending events: message batches, timers (columns + tags), lifecycle schedule.
        self.inbox: list[Messages] = []
        self._timers: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in range(4)]
        self._timer_tags: list[Any] = []
        self._new_timers: tuple[list[int], list[int], list[int], list[int], list[Any]] = (
            [], [], [], [], []
        )
        self._late: list[tuple[Any, ...]] = []
        self._window_end = 0
        t, nd, k, s = lifecycle_schedule(spec)
        mine = (nd >= self.lo) & (nd < self.hi)
        order = np.lexsort((s[mine], nd[mine], t[mine]))
        self._life = [a[mine][order] for a in (t, nd, k, s)]
        self._life_pos = 0
        # Observations and statistics.
        self._obs: tuple[list[int], list[int], list[str], list[float]] = ([], [], [], [])
        self.milestone_names = frozenset(getattr(self.proto_cls, "milestones", ()))
        if spec.stop_when:
            self.milestone_names |= {spec.stop_when}
        self.milestones: dict[str, tuple[set[int], int]] = {m: (set(), -1) for m in self.milestone_names}
        self.missing = n_local  # live local nodes that have not emitted stop_when yet
        self.counts = {"delivered": 0, "corrupt": 0, "dropped_crashed": 0, "timers": 0, "observations": 0}

    # --- called from handlers through the context ------------------------------------------

    def add_timer(self, li: int, node: int, when: int, tag: Hashable) -> int:
        """Schedule a timer; one due inside the current window joins the in-window heap."""
        tid = self.timer_seq[li]
        self.timer_seq[li] = tid + 1
        if when < self._window_end:
            heapq.heappush(self._late, (when, P_TIMER, node, tid, 0, self.epoch[li], tag))
        else:
            nt = self._new_timers
            nt[0].append(when)
            nt[1].append(node)
            nt[2].append(tid)
            nt[3].append(self.epoch[li])
            nt[4].append(tag)
        return tid

    def observe(self, node: int, now: int, name: str, value: float) -> None:
        """Record an observation and track milestones (first emission per node)."""
        ob = self._obs
        ob[0].append(now)
        ob[1].append(node)
        ob[2].append(name)
        ob[3].append(value)
        if name in self.milestone_names:
            seen, _ = self.milestones[name]
            if node not in seen:
                seen.add(node)
                self.milestones[name] = (seen, now)
                if name == self.spec.stop_when and self.alive[node - self.lo]:
                    self.missing -= 1

    # --- the window step -------------------------------------------------------------------

    def receive(self, batches: Sequence[Messages | list[Messages] | None]) -> None:
        """Accept routed deliveries for local nodes."""
        for b in batches:
            if isinstance(b, list):  # a router actor hands over a list of batches
                self.inbox.extend(x for x in b if len(x))
            elif b is not None and len(b):
                self.inbox.append(b)

    def step(self, end: int, inbound: Sequence[Messages | None]) -> tuple[list[Messages | None], StepInfo]:
        """Receive, process every event before ``end``, route what was sent (in-shard routing)."""
        self.receive(inbound)
        out = self.advance(end)
        assert self.router is not None
        shards = len(self.bounds) - 1
        if out is None:
            return [None] * shards, self.info([NEVER] * shards)
        parts = self.router.split(self.router.route(out))
        mins = [int(p.time.min()) if p is not None else NEVER for p in parts]
        return parts, self.info(mins)

    def info(self, out_min: list[int]) -> StepInfo:
        """The shard's state for the coordinator."""
        return StepInfo(self.next_time(), out_min, self.missing <= 0)

    def next_time(self) -> int:
        """The earliest pending local event."""
        t = NEVER
        if self._life_pos < len(self._life[0]):
            t = int(self._life[0][self._life_pos])
        if len(self._timers[0]):
            t = min(t, int(self._timers[0].min()))
        for b in self.inbox:
            t = min(t, int(b.time.min()))
        return t

    def _due_messages(self, end: int) -> tuple[Messages | None, np.ndarray]:
        """Take the deliveries before ``end`` out of the inbox, with local type codes."""
        due: list[Messages] = []
        codes: list[np.ndarray] = []
        keep: list[Messages] = []
        strings = self.log.strings
        for b in self.inbox:
            m = b.time < end
            if not m.any():
                keep.append(b)
                continue
            if m.all():
                part = b
            else:
                part = b.select(np.flatnonzero(m))
                keep.append(b.select(np.flatnonzero(~m)))
            due.append(part)
            codes.append(strings.codes(part.type_names)[part.type_idx])
        self.inbox = keep
        if not due:
            return None, np.zeros(0, dtype=np.int32)
        merged = Messages(
            np.concatenate([d.time for d in due]),
            np.concatenate([d.src for d in due]),
            np.concatenate([d.dst for d in due]),
            np.concatenate([d.msg_id for d in due]),
            np.concatenate(codes),
            strings.names,
            [p for d in due for p in d.payload],
            np.concatenate([d.copy for d in due]),
            np.concatenate([d.corrupt for d in due]),
        )
        return merged, merged.type_idx

    def _due_timers(self, end: int) -> tuple[list[np.ndarray], list[Any]]:
        t, nd, tid, ep = self._timers
        m = t < end
        if not m.any():
            return [a[:0] for a in self._timers], []
        idx = np.flatnonzero(m)
        rest = np.flatnonzero(~m)
        tags = self._timer_tags
        due = [a[idx] for a in self._timers], [tags[i] for i in idx.tolist()]
        self._timers = [a[rest] for a in self._timers]
        self._timer_tags = [tags[i] for i in rest.tolist()]
        return due

    def _flush_new_timers(self) -> None:
        nt = self._new_timers
        if not nt[0]:
            return
        cols = [np.array(c, dtype=np.int64) for c in nt[:4]]
        self._timers = [np.concatenate([a, c]) for a, c in zip(self._timers, cols, strict=True)]
        self._timer_tags.extend(nt[4])
        self._new_timers = ([], [], [], [], [])

    def advance(self, end: int) -> Messages | None:
        """Process every event before ``end``; returns the raw sends of the window."""
        self._window_end = end
        lt, ln, lk, ls = self._life
        p0 = self._life_pos
        p1 = int(np.searchsorted(lt, end, side="left"))
        self._life_pos = p1
        life = (lt[p0:p1], ln[p0:p1], lk[p0:p1], ls[p0:p1])
        msgs, mcodes = self._due_messages(end)
        (tt, tn, tid, tep), ttags = self._due_timers(end)
        n_l, n_m = p1 - p0, (len(msgs) if msgs is not None else 0)
        m_off, t_off = n_l, n_l + n_m
        empty = np.zeros(0, dtype=np.int64)
        time = np.concatenate([life[0], msgs.time if msgs else empty, tt])
        prio = np.concatenate(
            [np.full(n_l, P_NODE), np.full(n_m, P_MSG), np.full(len(tt), P_TIMER)]
        ).astype(np.int64)
        node = np.concatenate([life[1], msgs.dst if msgs else empty, tn])
        k1 = np.concatenate([life[3], msgs.msg_id if msgs else empty, tid])
        k2 = np.concatenate([np.zeros(n_l, np.int64), msgs.copy.astype(np.int64) if msgs else empty, np.zeros(len(tt), np.int64)])
        order = np.lexsort((k2, k1, node, prio, time))

        crashed_m: list[int] = []
        skipped_t: list[int] = []
        late_rows: list[tuple[int, int, int, Any]] = []
        ctx = self.ctx
        protos, alive, epoch, lo = self.protos, self.alive, self.epoch, self.lo
        cancelled = self.cancelled
        m_time = msgs.time.tolist() if msgs else []
        m_dst = msgs.dst.tolist() if msgs else []
        m_src = msgs.src.tolist() if msgs else []
        m_cor = msgs.corrupt.tolist() if msgs else []
        m_pl = msgs.payload if msgs else []
        t_time, t_node, t_id, t_ep = tt.tolist(), tn.tolist(), tid.tolist(), tep.tolist()
        l_time, l_node, l_kind = life[0].tolist(), life[1].tolist(), life[2].tolist()
        late = self._late
        j = -1
        event = "start"
        try:
            for j in order.tolist():
                if late:
                    self._run_late(self._key(j, time, prio, node, k1, k2), late_rows)
                if j >= t_off:
                    k = j - t_off
                    nd = t_node[k]
                    li = nd - lo
                    if t_ep[k] != epoch[li] or (cancelled and (nd, t_id[k]) in cancelled):
                        cancelled.discard((nd, t_id[k]))
                        skipped_t.append(k)
                        continue
                    ctx.now = t_time[k]
                    ctx.node = nd
                    ctx._li = li
                    protos[li].on_timer(ctx, ttags[k])  # type: ignore[union-attr]
                elif j >= m_off:
                    k = j - m_off
                    nd = m_dst[k]
                    li = nd - lo
                    if not alive[li]:
                        crashed_m.append(k)
                        continue
                    if m_cor[k]:
                        continue
                    ctx.now = m_time[k]
                    ctx.node = nd
                    ctx._li = li
                    protos[li].on_message(ctx, m_src[k], m_pl[k])  # type: ignore[union-attr]
                else:
                    self._lifecycle(l_time[j], l_node[j], l_kind[j])
            j = -1
            while late:
                self._run_late(None, late_rows)
        except ProtocolError:
            raise
        except Exception:
            event = self._describe(j, m_off, t_off, msgs, ttags, l_kind)
            raise ProtocolError(self.spec.run_id, ctx.node, ctx.now, event, traceback.format_exc()) from None
        self._flush_new_timers()
        self._log_window(msgs, mcodes, crashed_m, (tt, tn, tid, ttags), skipped_t, late_rows, life)
        return self._take_outbox()

    def _key(self, j: int, *cols: np.ndarray) -> tuple[int, ...]:
        return tuple(int(c[j]) for c in cols)

    def _run_late(self, before: tuple[int, ...] | None, rows: list[tuple[int, int, int, Any]]) -> None:
        """Fire in-window timers that precede ``before`` (all of them if None)."""
        late, ctx = self._late, self.ctx
        while late and (before is None or late[0][:5] < before):
            when, _, nd, tid, _, ep, tag = heapq.heappop(late)
            li = nd - self.lo
            if ep != self.epoch[li] or (nd, tid) in self.cancelled:
                self.cancelled.discard((nd, tid))
                continue
            rows.append((when, nd, tid, tag))
            ctx.now, ctx.node, ctx._li = when, nd, li
            self.protos[li].on_timer(ctx, tag)  # type: ignore[union-attr]

    def _lifecycle(self, now: int, nd: int, kind: int) -> None:
        ctx, li = self.ctx, nd - self.lo
        ctx.now, ctx.node, ctx._li = now, nd, li
        stop = self.spec.stop_when
        if kind == START:
            self.alive[li] = True
            self.protos[li] = self.proto_cls(self.params, nd)
            self.protos[li].on_start(ctx)  # type: ignore[union-attr]
        elif kind == CRASH and self.alive[li]:
            mark = len(ctx._out_msg)
            self.protos[li].on_crash(ctx)  # type: ignore[union-attr]
            for lst in (ctx._out_time, ctx._out_src, ctx._out_dst, ctx._out_seq, ctx._out_msg):
                del lst[mark:]
            self.alive[li] = False
            self.epoch[li] += 1
            self.protos[li] = None
            if stop and nd not in self.milestones[stop][0]:
                self.missing -= 1
        elif kind == RECOVER and not self.alive[li]:
            self.alive[li] = True
            self.protos[li] = self.proto_cls(self.params, nd)
            if stop and nd not in self.milestones[stop][0]:
                self.missing += 1
            self.protos[li].on_recover(ctx)  # type: ignore[union-attr]
        else:
            return
        if self.log.writing:
            self.log.add(np.array([now]), kind, np.array([nd]))

    def _describe(self, j: int, m_off: int, t_off: int, msgs: Messages | None, ttags: list[Any], l_kind: list[int]) -> str:
        if j < 0:
            return "an in-window timer"
        if j >= t_off:
            return f"timer {ttags[j - t_off]!r}"
        if j >= m_off and msgs is not None:
            k = j - m_off
            return f"message {msgs.payload[k]!r} from node {int(msgs.src[k])}"
        names = {START: "start", CRASH: "crash", RECOVER: "recover"}
        return names.get(l_kind[j], "lifecycle event")

    def _log_window(
        self,
        msgs: Messages | None,
        mcodes: np.ndarray,
        crashed_m: list[int],
        timers: tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]],
        skipped_t: list[int],
        late_rows: list[tuple[int, int, int, Any]],
        life: tuple[np.ndarray, ...],
    ) -> None:
        log, c = self.log, self.counts
        if msgs is not None:
            gone = np.zeros(len(msgs), dtype=bool)
            gone[crashed_m] = True
            cor = msgs.corrupt & ~gone
            ok = ~(gone | msgs.corrupt)
            c["delivered"] += int(ok.sum())
            c["corrupt"] += int(cor.sum())
            c["dropped_crashed"] += len(crashed_m)
            if log.messages:
                for mask, kind, name in ((ok, DELIVER, -1), (cor, CORRUPT, -1), (gone, DROP, log.strings.code("crashed"))):
                    if mask.any():
                        log.add(msgs.time[mask], kind, msgs.dst[mask], msgs.src[mask], msgs.msg_id[mask], mcodes[mask], name)
        tt, tn, tid, ttags = timers
        fired = np.ones(len(tt), dtype=bool)
        fired[skipped_t] = False
        c["timers"] += int(fired.sum()) + len(late_rows)
        if log.messages:
            if fired.any():
                tags = ttags if fired.all() else [ttags[i] for i in np.flatnonzero(fired).tolist()]
                log.add(tt[fired], TIMER, tn[fired], -1, tid[fired], log.tag_codes(tags))
            if late_rows:
                w, nd, ids, tags = zip(*late_rows, strict=True)
                log.add(np.array(w), TIMER, np.array(nd), -1, np.array(ids), log.tag_codes(list(tags)))
        ob = self._obs
        if ob[0]:
            c["observations"] += len(ob[0])
            if log.writing:
                names = log.strings.codes(ob[2])
                log.add(np.array(ob[0]), OBS, np.array(ob[1]), -1, -1, -1, names, np.array(ob[3], dtype=np.float64))
            self._obs = ([], [], [], [])

    def _take_outbox(self) -> Messages | None:
        ctx = self.ctx
        if not ctx._out_msg:
            return None
        src = np.array(ctx._out_src, dtype=np.int64)
        dst = np.array(ctx._out_dst, dtype=np.int64)
        n = self.spec.n_nodes
        bad = (dst < 0) | (dst >= n)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ProtocolError(
                self.spec.run_id, int(src[i]), int(ctx._out_time[i]),
                f"send to node {ctx._out_dst[i]!r}",
                f"ValueError: destination {ctx._out_dst[i]!r} is not a node id in 0..{n - 1}\n",
            )
        msgs = ctx._out_msg
        types = self._type_codes
        strings = self.log.strings
        try:
            idx = np.array([types[type(m)] for m in msgs], dtype=np.int32)
        except KeyError:
            for m in msgs:
                if type(m) not in types:
                    types[type(m)] = strings.code(type(m).__name__)
            idx = np.array([types[type(m)] for m in msgs], dtype=np.int32)
        out = Messages(
            np.array(ctx._out_time, dtype=np.int64),
            src,
            dst,
            (src << SEQ_BITS) | np.array(ctx._out_seq, dtype=np.int64),
            idx,
            list(strings.names),
            msgs,
            np.zeros(len(msgs), dtype=np.int8),
            np.zeros(len(msgs), dtype=bool),
        )
        ctx._out_time, ctx._out_src, ctx._out_dst, ctx._out_seq, ctx._out_msg = [], [], [], [], []
        return out

    # --- end of run ----------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Close the log and return this shard's counts and milestones."""
        rows = self.log.close()
        route = self.router.stats if self.router is not None else RouteStats()
        return {
            "counts": dict(self.counts),
            "route": route,
            "rows": rows,
            "milestones": {k: (len(v[0]), v[1]) for k, v in self.milestones.items()},
            "alive": sum(self.alive),
        }
