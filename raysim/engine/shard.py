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
numpy columns per window. Per-node protocols act through :mod:`raysim.engine.context`; columnar
ones (:class:`~raysim.api.protocol.BatchProtocol`) are driven by :mod:`raysim.engine.batch`; who is
up when comes from :mod:`raysim.network.lifecycle`.
"""

from __future__ import annotations

import gc
import heapq
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysim.api.protocol import BatchProtocol, Protocol, ProtocolSpec
from raysim.engine.batch import BatchShardContext, EventBatch, process_window
from raysim.engine.context import P_MSG, P_NODE, P_TIMER, ShardContext, node_keys
from raysim.engine.observe import per_node_values
from raysim.engine.pending import Pending
from raysim.errors import ProtocolError
from raysim.log.eventlog import EventLog
from raysim.log.schema import CORRUPT, CRASH, DELIVER, DROP, JOIN, LEAVE, RECOVER, START, TIMER
from raysim.network.faults import Faults
from raysim.network.lifecycle import Schedule, lifecycle_schedule
from raysim.network.router import SEQ_BITS, Messages, Router, RouteStats
from raysim.network.topology import Topology
from raysim.values.rng import NodeRng, derive

NEVER = np.iinfo(np.int64).max
_RNG_STREAM = 0x5EED
_CRASH_STREAM = 0xC4A5



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
    tick_ms: float = 1.0
    trace: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # churn trace columns

    @property
    def lookahead(self) -> int:
        """The window length: the smallest delay any message can have."""
        return max(1, int(self.delay.lower_bound))


@dataclass
class StepInfo:
    """What the coordinator learns from a shard after a window."""

    next_time: int  # earliest pending local event (NEVER if none)
    out_min_time: list[int]  # per destination shard, the earliest delivery sent there
    done: bool  # every live local node has emitted the stop observation
    stopped: bool = False  # the stop rule held after the previous window: nothing was done


# What a shard hands to a destination shard after a window: whether the sender had met the
# stop rule, and the deliveries (a batch, a router's list of batches, or None).
Inbound = tuple[bool, "Messages | list[Messages] | None"]


class Shard:
    """A block of simulated nodes with its pending events, handlers and log."""

    def __init__(
        self,
        spec: RunSpec,
        index: int,
        bounds: np.ndarray,
        log_path: Path | None,
        route_here: bool = True,
        *,
        protocol: ProtocolSpec,
        schedule: Schedule | None = None,
    ) -> None:
        """Nodes ``bounds[index]..bounds[index+1]-1`` of the run ``spec``.

        ``protocol`` is the resolved protocol (the runtime looks it up; the engine never
        imports the protocol catalogue); ``schedule`` the run's lifecycle schedule, computed
        once per run by the runtime and shared by every shard (computed here if None).
        """
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
        self.topology = Topology(
            spec.topology, spec.seed, spec.n_nodes, spec.degree, self.lo, self.hi
        )
        proto = protocol
        self.proto_cls: Any = proto.cls
        self.params = proto.make_params(spec.params)
        self.batch = issubclass(proto.cls, BatchProtocol)
        self.protos: list[Protocol | None] = [None] * n_local
        self.alive = [False] * n_local
        self.epoch = [0] * n_local
        self.send_seq = [0] * n_local
        self.timer_seq = [0] * n_local
        self.event_seq = [0] * n_local  # each node's next ``seq`` (the per-node path)
        self.storage: list[dict[str, Any]] = [{} for _ in range(n_local)]
        keys = node_keys(derive(spec.seed, _RNG_STREAM), self.lo, self.hi)
        self.rngs = [] if self.batch else [NodeRng(k) for k in keys]
        self.cancelled: set[tuple[int, int]] = set()
        self._type_codes: dict[type, int] = {}
        # Pending events: message batches, timers (columns + tags), lifecycle schedule.
        # inbox columns: time, src, dst, msg_id, local type code, copy, corrupt; + payloads
        self.inbox = Pending(7 + len(getattr(proto.cls, "fields", ())))
        # timer columns: time, node, timer id, epoch; + tags
        self.timers = Pending(4)
        self._life_rows: list[tuple[int, int, int, int, int]] = []  # time kind node arg seq
        if schedule is None:
            schedule = lifecycle_schedule(spec)
        sched = schedule.for_nodes(self.lo, self.hi)
        self._life = [sched.time, sched.node, sched.kind, sched.seq, sched.arg]
        self._life_pos = 0
        # Observations and statistics.
        self.milestone_names = frozenset(getattr(self.proto_cls, "milestones", ()))
        if spec.stop_when:
            self.milestone_names |= {spec.stop_when}
        self.milestones: dict[str, tuple[set[int], int]] = {
            m: (set(), -1) for m in self.milestone_names
        }
        self.missing = n_local  # live local nodes that have not emitted stop_when yet
        self.counts = {
            "delivered": 0,
            "corrupt": 0,
            "dropped_crashed": 0,
            "timers": 0,
            "observations": 0,
        }
        self._windows = 0
        self.stopped = False
        self._own: Messages | None = None  # this shard's deliveries to itself, kept here
        self.ctx = ShardContext(self)
        # The columnar path (BatchProtocol): state and counters as numpy arrays.
        self.alive_np = np.zeros(n_local, dtype=bool)
        self.epoch_np = np.zeros(n_local, dtype=np.int64)
        self.seen_np = {m: np.zeros(n_local, dtype=bool) for m in self.milestone_names}
        self.seen_last = dict.fromkeys(self.milestone_names, -1)
        self._life_chunks: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._mtype_log: np.ndarray | None = None
        if self.batch:
            batch_cls: Any = proto.cls
            self.bproto: Any = batch_cls(self.params, self.lo, self.hi)
            self.bctx = BatchShardContext(self, keys)

    # --- called from handlers through the context ------------------------------------------

    def milestone(self, name: str, node: int, now: int) -> None:
        """Track the first emission of a milestone observation by ``node``."""
        seen, _ = self.milestones[name]
        if node not in seen:
            seen.add(node)
            self.milestones[name] = (seen, now)
            if name == self.spec.stop_when and self.alive[node - self.lo]:
                self.missing -= 1

    def milestone_batch(self, name: str, node: np.ndarray, time: np.ndarray) -> None:
        """Columnar twin of :meth:`milestone`."""
        seen = self.seen_np[name]
        li = node - self.lo
        new = ~seen[li]
        if new.any():
            seen[li[new]] = True
            self.seen_last[name] = max(self.seen_last[name], int(time[new].max()))

    def call_batch(self, handler: Any, ev: EventBatch, what: str) -> None:
        """Call a BatchProtocol handler; an exception becomes a ProtocolError."""
        try:
            handler(self.bctx, ev)
        except Exception:
            raise ProtocolError(
                self.spec.run_id,
                int(ev.node[0]),
                int(ev.time[0]),
                f"a batch of {len(ev)} {what} (first at node {int(ev.node[0])})",
                traceback.format_exc(),
            ) from None

    def lifecycle_batch(
        self, time: np.ndarray, node: np.ndarray, kind: np.ndarray, arg: np.ndarray
    ) -> None:
        """Columnar lifecycle events: start, crash, recover, join, leave (nodes distinct)."""
        ctx, proto = self.bctx, self.bproto
        for k in (START, CRASH, RECOVER, JOIN, LEAVE):
            m = kind == k
            if not m.any():
                continue
            nd, t, a = node[m], time[m], arg[m]
            li = nd - self.lo
            if k in (CRASH, LEAVE):
                keep = self.alive_np[li]
            elif k in (RECOVER, JOIN):
                keep = ~self.alive_np[li]
            else:
                keep = np.ones(len(nd), dtype=bool)
            nd, t, a, li = nd[keep], t[keep], a[keep], li[keep]
            if not len(nd):
                continue
            q = ctx.next_seq(li)
            ctx.handling[li] = q
            ev = EventBatch(nd, li, t)
            ev.src = a
            ev.cause = np.full(len(nd), -1, dtype=np.int64)
            if k == START:
                self.alive_np[li] = True
                self.call_batch(proto.on_start, ev, "starts")
            elif k == CRASH:
                marks = len(ctx.sends), len(ctx.timers), len(ctx.obs), len(ctx.late)
                self.call_batch(proto.on_crash, ev, "crashes")
                del (
                    ctx.sends[marks[0] :],
                    ctx.timers[marks[1] :],
                    ctx.obs[marks[2] :],
                    ctx.late[marks[3] :],
                )
                self.alive_np[li] = False
                self.epoch_np[li] += 1
            elif k == LEAVE:
                self.call_batch(proto.on_leave, ev, "departures")
                self.alive_np[li] = False
                self.epoch_np[li] += 1
            elif k == JOIN:
                self.alive_np[li] = True
                self.epoch_np[li] += 1
                self.call_batch(proto.on_join, ev, "joins")
            else:
                self.alive_np[li] = True
                self.call_batch(proto.on_recover, ev, "recoveries")
            if self.log.writing:
                self._life_chunks.append((t, k, nd, a, q))

    # --- the window step -------------------------------------------------------------------

    def receive(self, batches: Sequence[Messages | list[Messages] | None]) -> None:
        """Accept routed deliveries for local nodes."""
        flat: list[Messages] = []
        for b in batches:
            if isinstance(b, list):  # a router actor hands over a list of batches
                flat.extend(b)
            elif b is not None:
                flat.append(b)
        strings = self.log.strings
        for b in flat:
            if not len(b):
                continue
            if self.batch:  # type index into the protocol's message_types; fields as columns
                cols = (b.time, b.src, b.dst, b.msg_id, b.type_idx, b.copy, b.corrupt, *b.fields)
                self.inbox.add(cols, [])
            else:
                codes = strings.codes(b.type_names)[b.type_idx]
                cols = (b.time, b.src, b.dst, b.msg_id, codes, b.copy, b.corrupt)
                self.inbox.add(cols, b.payload)

    def stop_rule_met(self, inbound: Sequence[Inbound]) -> bool:
        """Whether every shard had met the stop rule after the previous window.

        Each shard decides this from the flags that came with its inbound batches, so all
        shards stop after the same window without asking the coordinator.
        """
        if not self.stopped and self.spec.stop_when and inbound and all(f for f, _ in inbound):
            self.stopped = True
        return self.stopped

    def step(self, end: int, inbound: Sequence[Inbound]) -> tuple[list[Inbound], StepInfo]:
        """Receive, process every event before ``end``, route what was sent (in-shard routing)."""
        shards = len(self.bounds) - 1
        if self.stop_rule_met(inbound):
            return [(True, None)] * shards, StepInfo(NEVER, [NEVER] * shards, True, True)
        self.receive([*(b for _, b in inbound), self._own])
        self._own = None
        out = self.advance(end)
        assert self.router is not None
        if out is None:
            info = self.info([NEVER] * shards)
            return [(info.done, None)] * shards, info
        parts: list[Messages | None] = self.router.split(self.router.route(out))
        info = self.info([int(p.time.min()) if p is not None else NEVER for p in parts])
        # NOTE: what a shard sends to its own nodes stays in the process: it never goes
        # through Ray's object store (half the traffic with two shards).
        self._own, parts[self.index] = parts[self.index], None
        return [(info.done, p) for p in parts], info

    def info(self, out_min: list[int]) -> StepInfo:
        """The shard's state for the coordinator."""
        stop = self.spec.stop_when
        if self.batch:
            done = bool(stop) and not (self.alive_np & ~self.seen_np[stop]).any() if stop else False
        else:
            done = self.missing <= 0
        return StepInfo(self.next_time(), out_min, done)

    def next_time(self) -> int:
        """The earliest pending local event."""
        t = NEVER
        if self._life_pos < len(self._life[0]):
            t = int(self._life[0][self._life_pos])
        for pool in (self.timers, self.inbox):
            m = pool.min_time()
            if m is not None:
                t = min(t, m)
        return t

    def _flush_new_timers(self) -> None:
        if self.batch:
            parts = self.bctx.timers
            if parts:
                cols = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
                self.timers.add(cols, [t for p in parts for t in p[4]])
                self.bctx.timers = []
            return
        nt = self.ctx._new_timers
        if not nt:
            return
        when, nd, tid, ep, tags = zip(*nt, strict=True)
        self.timers.add(tuple(np.array(c, dtype=np.int64) for c in (when, nd, tid, ep)), list(tags))
        self.ctx._new_timers = []

    def advance(self, end: int) -> Messages | None:
        """Process every event before ``end``; returns the raw sends of the window."""
        self.ctx._window_end = end
        self._windows += 1
        if self._windows % 256 == 0 and not gc.isenabled():
            gc.collect()
        lt, ln, lk, ls, la = self._life
        p0 = self._life_pos
        p1 = int(np.searchsorted(lt, end, side="left"))
        self._life_pos = p1
        life = (lt[p0:p1], ln[p0:p1], lk[p0:p1], ls[p0:p1], la[p0:p1])
        mcols, m_pl = self.inbox.take(end)
        (tt, tn, tid, tep), ttags = self.timers.take(end)
        n_l, n_m, n_t = p1 - p0, len(mcols[0]), len(tt)
        m_off, t_off = n_l, n_l + n_m
        time = np.concatenate([life[0], mcols[0], tt])
        prio = np.repeat(np.array([P_NODE, P_MSG, P_TIMER], dtype=np.int64), [n_l, n_m, n_t])
        node = np.concatenate([life[1], mcols[2], tn])
        k1 = np.concatenate([life[3], mcols[3], tid])
        k2 = np.concatenate(
            [np.zeros(n_l, np.int64), mcols[5].astype(np.int64), np.zeros(n_t, np.int64)]
        )
        order = np.lexsort((k2, k1, node, prio, time))
        # Per sorted event: priority, time, node, local index, index within its source.
        offsets = np.repeat(np.array([0, m_off, t_off], dtype=np.int64), [n_l, n_m, n_t])
        seq_p = prio[order].tolist()
        seq_t = time[order].tolist()
        seq_n = node[order]
        seq_li = (seq_n - self.lo).tolist()
        seq_k = (order - offsets[order]).tolist()
        seq_n = seq_n.tolist()
        keys = (time, prio, node, k1, k2)

        crashed_m: list[int] = []
        skipped_t: list[int] = []
        late_rows: list[tuple[int, int, int, Any, int]] = []
        ctx = self.ctx
        protos, alive, epoch = self.protos, self.alive, self.epoch
        cancelled = self.cancelled
        if self.batch:
            self.bctx.window_end = end
            timers: list[Any] = [tt, tn, tid, tep, ttags]
            sort_keys = [time, prio, node, k1, k2]
            crashed_m, skipped_t, mseq_np, tseq_np = process_window(
                self, sort_keys, order, (m_off, t_off), (life[2], life[4]), mcols, timers
            )
            tt, tn, tid, tep, ttags = timers
            self._flush_new_timers()
            self._log_window(
                mcols, mseq_np, crashed_m, (tt, tn, tid, ttags, tseq_np), skipped_t, []
            )
            return self._take_outbox()
        m_src, m_cor, m_id = mcols[1].tolist(), mcols[6].tolist(), mcols[3].tolist()
        t_id, t_ep = tid.tolist(), tep.tolist()
        nseq = self.event_seq
        m_seq = [0] * n_m  # the seq each message's arrival took at its receiver
        t_seq = [0] * n_t  # the seq each fired timer took
        l_kind, l_arg = life[2].tolist(), life[4].tolist()
        late = ctx._late
        i = -1
        try:
            for i, (p, t, nd, li, k) in enumerate(
                zip(seq_p, seq_t, seq_n, seq_li, seq_k, strict=True)
            ):
                if late:
                    self._run_late(self._key(order, i, keys), late_rows)
                if p == P_MSG:
                    q = nseq[li]
                    nseq[li] = q + 1
                    m_seq[k] = q
                    if not alive[li]:
                        crashed_m.append(k)
                        continue
                    if m_cor[k]:  # the receiver's checksum fails: dropped, logged as corrupt
                        continue
                    ctx.now = t
                    ctx.node = nd
                    ctx._li = li
                    ctx.cause = m_id[k]
                    ctx._evseq = q
                    protos[li].on_message(ctx, m_src[k], m_pl[k])
                elif p == P_TIMER:
                    if t_ep[k] != epoch[li] or (cancelled and (nd, t_id[k]) in cancelled):
                        cancelled.discard((nd, t_id[k]))
                        skipped_t.append(k)
                        continue
                    q = nseq[li]
                    nseq[li] = q + 1
                    t_seq[k] = q
                    ctx.now = t
                    ctx.node = nd
                    ctx._li = li
                    ctx.cause = t_id[k]
                    ctx._evseq = q
                    protos[li].on_timer(ctx, ttags[k])
                else:
                    self._lifecycle(t, nd, l_kind[k], l_arg[k])
            i = -1
            while late:
                self._run_late(None, late_rows)
        except ProtocolError:
            raise
        except Exception:
            event = self._describe(seq_p[i] if i >= 0 else -1, seq_k[i], m_src, m_pl, ttags, l_kind)
            raise ProtocolError(
                self.spec.run_id, ctx.node, ctx.now, event, traceback.format_exc()
            ) from None
        self._flush_new_timers()
        timer_cols = (tt, tn, tid, ttags, np.array(t_seq, dtype=np.int64))
        self._log_window(
            mcols, np.array(m_seq, dtype=np.int64), crashed_m, timer_cols, skipped_t, late_rows
        )
        return self._take_outbox()

    @staticmethod
    def _key(order: np.ndarray, i: int, cols: tuple[np.ndarray, ...]) -> tuple[int, ...]:
        j = order[i]
        return tuple(int(c[j]) for c in cols)

    def _run_late(
        self, before: tuple[int, ...] | None, rows: list[tuple[int, int, int, Any, int]]
    ) -> None:
        """Fire in-window timers that precede ``before`` (all of them if None)."""
        ctx = self.ctx
        late = ctx._late
        while late and (before is None or late[0][:5] < before):
            when, _, nd, tid, _, ep, tag = heapq.heappop(late)
            li = nd - self.lo
            if ep != self.epoch[li] or (nd, tid) in self.cancelled:
                self.cancelled.discard((nd, tid))
                continue
            q = self.event_seq[li]
            self.event_seq[li] = q + 1
            rows.append((when, nd, tid, tag, q))
            ctx.now, ctx.node, ctx._li, ctx.cause, ctx._evseq = when, nd, li, tid, q
            proto = self.protos[li]
            assert proto is not None
            try:
                proto.on_timer(ctx, tag)
            except Exception:
                raise ProtocolError(
                    self.spec.run_id, nd, when, f"timer {tag!r}", traceback.format_exc()
                ) from None

    def _lifecycle(self, now: int, nd: int, kind: int, arg: int) -> None:
        ctx, li = self.ctx, nd - self.lo
        alive = self.alive[li]
        if (kind in (CRASH, LEAVE) and not alive) or (kind in (RECOVER, JOIN) and alive):
            return  # not a transition: nothing happens, no seq is taken
        q = self.event_seq[li]
        self.event_seq[li] = q + 1
        ctx.now, ctx.node, ctx._li, ctx.cause, ctx._evseq = now, nd, li, -1, q
        stop = self.spec.stop_when
        if kind == START:
            self.alive[li] = True
            proto: Protocol = self.proto_cls(self.params, nd)
            self.protos[li] = proto
            proto.on_start(ctx)
        elif kind in (CRASH, LEAVE) and self.alive[li]:
            old = self.protos[li]
            assert old is not None
            if kind == CRASH:
                mark, tmark, omark = len(ctx._sends), len(ctx._new_timers), len(ctx._obs)
                old.on_crash(ctx)
                del ctx._sends[mark:]
                del ctx._new_timers[tmark:]
                del ctx._obs[omark:]
            else:  # a graceful departure: what the node sends on its way out is sent
                old.on_leave(ctx)
            self.alive[li] = False
            self.epoch[li] += 1
            self.protos[li] = None
            if stop and nd not in self.milestones[stop][0]:
                self.missing -= 1
        elif kind == RECOVER and not self.alive[li]:
            self.alive[li] = True
            fresh: Protocol = self.proto_cls(self.params, nd)
            self.protos[li] = fresh
            if stop and nd not in self.milestones[stop][0]:
                self.missing += 1
            fresh.on_recover(ctx)
        elif kind == JOIN and not self.alive[li]:
            self.alive[li] = True
            self.epoch[li] += 1
            self.storage[li] = {}  # a new session: nothing survives from an earlier one
            joiner: Protocol = self.proto_cls(self.params, nd)
            self.protos[li] = joiner
            if stop and nd not in self.milestones[stop][0]:
                self.missing += 1
            joiner.on_join(ctx, arg if arg >= 0 else None)
        if self.log.writing:
            self._life_rows.append((now, kind, nd, arg, q))

    @staticmethod
    def _describe(
        p: int, k: int, m_src: list[int], m_pl: list[Any], ttags: list[Any], l_kind: list[int]
    ) -> str:
        if p < 0:
            return "an in-window timer"
        if p == P_TIMER:
            return f"timer {ttags[k]!r}"
        if p == P_MSG:
            return f"message {m_pl[k]!r} from node {m_src[k]}"
        names = {START: "start", CRASH: "crash", RECOVER: "recover", JOIN: "join", LEAVE: "leave"}
        return names.get(l_kind[k], "lifecycle event")

    def _log_window(
        self,
        mcols: list[np.ndarray],
        mseq: np.ndarray,
        crashed_m: list[int],
        timers: tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], np.ndarray],
        skipped_t: list[int],
        late_rows: list[tuple[int, int, int, Any, int]],
    ) -> None:
        log, c = self.log, self.counts
        for t, kind, nd, arg, q in self._life_chunks:
            log.add(t, kind, nd, q, arg)
        self._life_chunks = []
        if self._life_rows:
            lt, lk, ln, la, lq = (
                np.array(c, dtype=np.int64) for c in zip(*self._life_rows, strict=True)
            )
            for kind in np.unique(lk).tolist():
                m = lk == kind
                log.add(lt[m], kind, ln[m], lq[m], la[m])
            self._life_rows = []
        if len(mcols[0]):
            mt, ms, md, mid, mcode, _, mcor = mcols[:7]
            if self.batch:
                if self._mtype_log is None:
                    self._mtype_log = log.strings.codes(self.proto_cls.message_types)
                mcode = self._mtype_log[mcode] if len(self._mtype_log) else mcode
            gone = np.zeros(len(mt), dtype=bool)
            gone[crashed_m] = True
            cor = mcor & ~gone
            ok = ~(gone | mcor)
            c["delivered"] += int(ok.sum())
            c["corrupt"] += int(cor.sum())
            c["dropped_crashed"] += len(crashed_m)
            if log.messages:
                for mask, kind, name in (
                    (ok, DELIVER, -1),
                    (cor, CORRUPT, -1),
                    (gone, DROP, log.strings.code("crashed")),
                ):
                    if mask.any():
                        log.add(
                            mt[mask], kind, md[mask], mseq[mask], ms[mask], mid[mask],
                            mcode[mask], name,
                        )
        tt, tn, tid, ttags, tseq = timers
        fired = np.ones(len(tt), dtype=bool)
        fired[skipped_t] = False
        c["timers"] += int(fired.sum()) + len(late_rows)
        if log.messages:
            if fired.any():
                tags = ttags if fired.all() else [ttags[i] for i in np.flatnonzero(fired).tolist()]
                log.add(
                    tt[fired], TIMER, tn[fired], tseq[fired], -1, tid[fired], log.tag_codes(tags)
                )
            if late_rows:
                lw, lnode, lids, ltags, lseq = zip(*late_rows, strict=True)
                log.add(
                    np.array(lw),
                    TIMER,
                    np.array(lnode),
                    np.array(lseq),
                    -1,
                    np.array(lids),
                    log.tag_codes(list(ltags)),
                )
        # Milestones are counted here, from what survived the window (an observation made in
        # on_crash is discarded with everything else the crashing node did).
        for bt, bnode, bname, bval, bpeer, bref, bseq in self.bctx.obs if self.batch else []:
            if bname in self.milestone_names:
                self.milestone_batch(bname, bnode, bt)
            c["observations"] += len(bt)
            if log.writing:
                log.add_obs(bt, bnode, bseq, log.strings.code(bname), bpeer, bref, bval)
        if self.batch:
            self.bctx.obs = []
        ob = self.ctx._obs
        if ob and self.milestone_names:
            names_set = self.milestone_names
            for o in ob:
                if o[2] in names_set:
                    self.milestone(o[2], o[1], o[0])
        if ob:
            c["observations"] += len(ob)
            if log.writing:
                ot, onode, oname, oval, opeer, oref, oseq, ocode = zip(*ob, strict=True)
                log.add_obs(
                    np.array(ot, dtype=np.int64),
                    np.array(onode, dtype=np.int64),
                    np.array(oseq, dtype=np.int64),
                    log.strings.codes(oname),
                    np.array(opeer, dtype=np.int64),
                    np.array(oref, dtype=np.int64),
                    per_node_values(list(oval), list(ocode)),
                )
            self.ctx._obs = []

    def _take_batch_outbox(self) -> Messages | None:
        parts = self.bctx.sends
        if not parts:
            return None
        self.bctx.sends = []
        t, src, dst, seq, mtype, eseq, cause, *fields = (
            np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))
        )
        n = self.spec.n_nodes
        bad = (dst < 0) | (dst >= n)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ProtocolError(
                self.spec.run_id,
                int(src[i]),
                int(t[i]),
                f"send to node {int(dst[i])}",
                f"ValueError: destination {int(dst[i])} is not a node id in 0..{n - 1}\n",
            )
        k = len(t)
        return Messages(
            t,
            src,
            dst,
            (src << SEQ_BITS) | seq,
            mtype.astype(np.int32),
            list(self.proto_cls.message_types),
            [],
            np.zeros(k, dtype=np.int8),
            np.zeros(k, dtype=bool),
            tuple(fields),
            eseq,
            cause,
        )

    def _take_outbox(self) -> Messages | None:
        if self.batch:
            return self._take_batch_outbox()
        ctx = self.ctx
        if not ctx._sends:
            return None
        t, src_l, dst_l, seq, msgs, eseq, cause = zip(*ctx._sends, strict=True)
        ctx._sends = []
        src = np.array(src_l, dtype=np.int64)
        n = self.spec.n_nodes
        try:
            dst = np.array(dst_l, dtype=np.int64)
            bad = (dst < 0) | (dst >= n)
        except (TypeError, ValueError, OverflowError):
            bad = np.array([not (isinstance(d, int | np.integer) and 0 <= d < n) for d in dst_l])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ProtocolError(
                self.spec.run_id,
                src_l[i],
                t[i],
                f"send to node {dst_l[i]!r}",
                f"ValueError: destination {dst_l[i]!r} is not a node id in 0..{n - 1}\n",
            )
        types = self._type_codes
        strings = self.log.strings
        try:
            idx = np.array([types[type(m)] for m in msgs], dtype=np.int32)
        except KeyError:
            for m in msgs:
                if type(m) not in types:
                    types[type(m)] = strings.code(type(m).__name__)
            idx = np.array([types[type(m)] for m in msgs], dtype=np.int32)
        k = len(msgs)
        return Messages(
            np.array(t, dtype=np.int64),
            src,
            dst,
            (src << SEQ_BITS) | np.array(seq, dtype=np.int64),
            idx,
            list(strings.names),
            list(msgs),
            np.zeros(k, dtype=np.int8),
            np.zeros(k, dtype=bool),
            (),
            np.array(eseq, dtype=np.int64),
            np.array(cause, dtype=np.int64),
        )

    # --- end of run ----------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Close the log and return this shard's counts and milestones."""
        rows = self.log.close()
        route = self.router.stats if self.router is not None else RouteStats()
        return {
            "counts": dict(self.counts),
            "route": route,
            "rows": rows,
            "milestones": (
                {k: (int(v.sum()), self.seen_last[k]) for k, v in self.seen_np.items()}
                if self.batch
                else {k: (len(v[0]), v[1]) for k, v in self.milestones.items()}
            ),
            "alive": int(self.alive_np.sum()) if self.batch else sum(self.alive),
        }
