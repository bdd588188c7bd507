"""The per-node driver: one Python object per node, one handler call per event.

The driver owns its nodes' state as plain lists (NOTE: list indexing with Python ints is
the cheapest per-event access there is; numpy scalars would cost more than the handlers):
the protocol objects, who is up, session epochs, send / timer / event counters, random
streams, stable storage and cancelled timers. :meth:`PerNodeDriver.run` walks a window's
events in the total order of :mod:`raysim.engine.order`, merging timers set to fire inside
the window from a small heap keyed the same way, and returns a
:class:`~raysim.engine.driver.Record` for the shard's one logging path.
"""

from __future__ import annotations

import heapq
import traceback
from typing import Any

import numpy as np

from raysim.api.protocol import Protocol, ProtocolSpec
from raysim.engine.compiled import hotpath
from raysim.engine.context import ShardContext, node_keys
from raysim.engine.driver import Obs, Record
from raysim.engine.observe import per_node_values
from raysim.engine.order import P_MSG, P_TIMER, Window
from raysim.engine.spec import RunSpec
from raysim.errors import ProtocolError
from raysim.log.eventlog import StringTable
from raysim.log.schema import CRASH, JOIN, LEAVE, RECOVER, START
from raysim.network.byzantine import byzantine_mask
from raysim.network.router import SEQ_BITS, Messages
from raysim.network.topology import Topology
from raysim.values.rng import NodeRng

_EMPTY = np.zeros(0, dtype=np.int64)


def check_destinations(spec: RunSpec, t: Any, src: Any, dst_l: Any) -> np.ndarray:
    """Destinations as int64, or a ProtocolError for the first one that is not a node id."""
    n = spec.n_nodes
    try:
        dst = np.asarray(dst_l, dtype=np.int64)
        bad = (dst < 0) | (dst >= n)
    except (TypeError, ValueError, OverflowError):
        dst = np.zeros(0, dtype=np.int64)
        bad = np.array([not (isinstance(d, int | np.integer) and 0 <= d < n) for d in dst_l])
    if np.count_nonzero(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ProtocolError(
            spec.run_id,
            int(src[i]),
            int(t[i]),
            f"send to node {dst_l[i]!r}",
            f"ValueError: destination {dst_l[i]!r} is not a node id in 0..{n - 1}\n",
        )
    return dst


class PerNodeDriver:
    """Drives :class:`~raysim.api.protocol.Protocol` objects, one per node."""

    def __init__(
        self, spec: RunSpec, protocol: ProtocolSpec, lo: int, hi: int, topology: Topology,
        rng_key: int, strings: StringTable,
    ) -> None:
        self.spec = spec
        self.strings = strings  # the log's string table: message type codes are its codes
        self.lo, self.hi = lo, hi
        n_local = hi - lo
        self.proto_cls: Any = protocol.cls
        # Byzantine nodes run the protocol's adversary variant, if the run names one.
        self.byz_cls: Any = None
        self.byz = np.zeros(n_local, dtype=bool)
        if spec.faults.byzantine.behaviour is not None:
            self.byz_cls = protocol.cls.adversary(spec.faults.byzantine.behaviour)
            self.byz = byzantine_mask(spec.faults.byzantine, spec.n_nodes, spec.seed)[lo:hi]
        self.params = protocol.make_params(spec.params)
        self.protos: list[Protocol | None] = [None] * n_local
        # The compiled twins of the context and the event loop where they are built (the
        # same log: see raysim.engine.compiled); the pure-Python ones otherwise. NOTE: the
        # per-node counters are lists of Python ints for the pure-Python loop (the cheapest
        # thing for it to index) and int64 arrays for the compiled one (C integers there).
        self._hot = hotpath()
        counters: Any = (
            (lambda: [0] * n_local)
            if self._hot is None
            else (lambda: np.zeros(n_local, dtype=np.int64))
        )
        self.alive = [False] * n_local
        self.epoch = counters()
        self.send_seq = counters()
        self.timer_seq = counters()
        self.event_seq = counters()  # each node's next ``seq``
        self.storage: list[dict[str, Any]] = [{} for _ in range(n_local)]
        # (the compiled twin of NodeRng where the compiled loop runs: the same streams)
        rng_cls: Any = NodeRng if self._hot is None else self._hot.FastRng
        self.rngs = [rng_cls(k) for k in node_keys(rng_key, lo, hi)]
        self.cancelled: set[tuple[int, int]] = set()
        self._type_codes: dict[type, int] = {}
        ctx_cls: Any = ShardContext if self._hot is None else self._hot.FastContext
        self.ctx = ctx_cls(
            spec.n_nodes, topology, self.send_seq, self.timer_seq, self.event_seq,
            self.epoch, self.rngs, self.cancelled, self.storage, seed=spec.seed,
        )
        if self._hot is not None:
            self.ctx._types = self._type_codes  # the compiled context codes each send's class
        self._life: list[tuple[int, int, int, int, int]] = []  # time kind node arg seq

    # --- the driver interface ------------------------------------------------------------

    def inbox_types(self, batch: Messages) -> np.ndarray:
        """The inbox's type column for ``batch``: the log's string codes of the class names."""
        return self.strings.codes(batch.type_names)[batch.type_idx]

    def log_types(self, codes: np.ndarray) -> np.ndarray:
        """The log's ``msg_type`` codes of an inbox type column (the same codes)."""
        return codes

    def alive_of(self, li: np.ndarray) -> np.ndarray:
        """Whether each local node ``li`` is up."""
        alive = self.alive
        return np.array([alive[i] for i in li.tolist()], dtype=bool)

    def alive_count(self) -> int:
        """How many local nodes are up."""
        return sum(self.alive)

    def run(self, w: Window) -> Record:
        """Call the handlers of every event of ``w`` in order."""
        ctx = self.ctx
        ctx._window_end = w.end
        order, keys = w.order, w.keys
        mcols, m_pl = w.msgs, w.payloads
        tt, _, tid, tep = w.timers
        ttags = w.tags
        n_m, n_t = len(mcols[0]), len(tt)
        crashed_m: list[int] = []
        skipped_t: list[int] = []
        late_rows: list[tuple[int, int, int, Any, int]] = []
        m_seq: Any
        t_seq: Any
        pos = [-1]  # where the loop stopped if a handler raised
        try:
            if self._hot is None:  # Python ints in lists: what the pure-Python loop indexes best
                seq = self._ordered(w)
                p, t, nd, li, k, src, cor, mid, t_id, t_ep, l_kind, l_arg = (
                    c.tolist() for c in (*seq, mcols[1], mcols[6], mcols[3], tid, tep,
                                         w.life[2], w.life[4])
                )
                m_seq = [0] * n_m  # the seq each message's arrival took at its receiver
                t_seq = [-1] * n_t  # the seq each fired timer took (-1: skipped)
                run_events(self, ctx, p, t, nd, li, k, src, cor, mid, m_pl, t_id, t_ep, ttags,
                           l_kind, l_arg, m_seq, t_seq, crashed_m, skipped_t, late_rows,
                           order, keys, pos)
            else:  # int64 columns (the corrupt flags as uint8) the compiled loop reads as C;
                # it reads the events through the window's order (see its docstring)
                i64 = [np.ascontiguousarray(c, dtype=np.int64)
                       for c in (mcols[1], mcols[3], tid, tep, w.life[2], w.life[4])]
                m_seq, t_seq = np.zeros(n_m, dtype=np.int64), np.full(n_t, -1, dtype=np.int64)
                self._hot.run_events(
                    self, ctx, order, keys, w.m_off, w.t_off, self.lo, i64[0],
                    np.ascontiguousarray(mcols[6], dtype=np.uint8), i64[1], m_pl, i64[2],
                    i64[3], ttags, i64[4], i64[5], m_seq, t_seq, crashed_m, skipped_t,
                    late_rows, pos,
                )
        except ProtocolError:
            raise
        except Exception:
            i = pos[0]
            j = int(order[i]) if i >= 0 else -1
            prio = int(keys[1][j]) if j >= 0 else -1
            row = j - (w.m_off if prio == P_MSG else w.t_off if prio == P_TIMER else 0)
            event = _describe(prio, row, mcols[1], m_pl, ttags, w.life[2])
            raise ProtocolError(
                self.spec.run_id, ctx.node, ctx.now, event, traceback.format_exc()
            ) from None
        return self._record(w, m_seq, crashed_m, skipped_t, t_seq, late_rows)

    def _ordered(self, w: Window) -> list[np.ndarray]:
        """The window's events in order as columns: priority, time, node, local index and
        row in its source (lifecycle, message or timer rows)."""
        order, keys = w.order, w.keys
        offsets = np.repeat(
            np.array([0, w.m_off, w.t_off], dtype=np.int64),
            [w.m_off, w.t_off - w.m_off, len(order) - w.t_off],
        )
        node = keys[2][order]
        return [keys[1][order], keys[0][order], node, node - self.lo, order - offsets[order]]

    def _record(
        self,
        w: Window,
        m_seq: list[int] | np.ndarray,
        crashed_m: list[int],
        skipped_t: list[int],
        t_seq: list[int] | np.ndarray,
        late_rows: list[tuple[int, int, int, Any, int]],
    ) -> Record:
        return Record(
            np.asarray(m_seq, dtype=np.int64),
            np.array(crashed_m, dtype=np.int64),
            self._fired(w, skipped_t, np.asarray(t_seq, dtype=np.int64), late_rows),
            self._take_life(),
            self._take_obs(),
        )

    def take_timers(self) -> tuple[tuple[np.ndarray, ...], list[Any]] | None:
        """Timers set for later windows, as columns and tags."""
        taken: tuple[tuple[np.ndarray, ...], list[Any]] | None = self.ctx._take_timers()
        return taken

    def take_sends(self) -> Messages | None:
        """The window's sends as a batch (type codes index ``type_names``)."""
        cols = self.ctx._take_sends()
        if cols is None:
            return None
        t, src_l, dst_l, seq, msgs, eseq, cause, codes = cols
        src = np.asarray(src_l, dtype=np.int64)
        # NOTE: an int64 array comes from the compiled context, which took only in-range
        # ints into it (anything else makes ``dst_l`` a list, checked here)
        dst = dst_l if type(dst_l) is np.ndarray else check_destinations(self.spec, t, src_l, dst_l)
        types = self._type_codes
        k = len(msgs)
        try:
            if codes is not None and not np.count_nonzero(codes < 0):
                idx = codes.astype(np.int32)  # looked up by the compiled context at each send
            else:
                idx = np.fromiter(map(types.__getitem__, map(type, msgs)), np.int32, k)
        except KeyError:
            for m in msgs:
                if type(m) not in types:
                    types[type(m)] = self.strings.code(type(m).__name__)
            idx = np.fromiter(map(types.__getitem__, map(type, msgs)), np.int32, k)
        return Messages(
            np.asarray(t, dtype=np.int64),
            src,
            dst,
            (src << SEQ_BITS) | np.asarray(seq, dtype=np.int64),
            idx,
            list(self.strings.names),
            msgs if isinstance(msgs, list) else list(msgs),
            np.zeros(k, dtype=np.int8),
            np.zeros(k, dtype=bool),
            (),
            np.asarray(eseq, dtype=np.int64),
            np.asarray(cause, dtype=np.int64),
        )

    # --- inside a window ---------------------------------------------------------------------

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

    def _make(self, li: int, nd: int) -> Protocol:
        """A fresh protocol object for node ``nd`` (the adversary class if it is Byzantine)."""
        cls = self.byz_cls if self.byz[li] else self.proto_cls
        proto: Protocol = cls(self.params, nd)
        return proto

    def _lifecycle(self, now: int, nd: int, kind: int, arg: int) -> None:
        ctx, li = self.ctx, nd - self.lo
        alive = self.alive[li]
        if (kind in (CRASH, LEAVE) and not alive) or (kind in (RECOVER, JOIN) and alive):
            return  # not a transition: nothing happens, no seq is taken
        q = self.event_seq[li]
        self.event_seq[li] = q + 1
        ctx.now, ctx.node, ctx._li, ctx.cause, ctx._evseq = now, nd, li, -1, q
        if kind == START:
            self.alive[li] = True
            proto: Protocol = self._make(li, nd)
            self.protos[li] = proto
            proto.on_start(ctx)
        elif kind in (CRASH, LEAVE):
            old = self.protos[li]
            assert old is not None
            if kind == CRASH:
                marks = ctx._marks()
                old.on_crash(ctx)
                ctx._truncate(marks)
            else:  # a graceful departure: what the node sends on its way out is sent
                old.on_leave(ctx)
            self.alive[li] = False
            self.epoch[li] += 1
            self.protos[li] = None
        elif kind == RECOVER:
            self.alive[li] = True
            fresh: Protocol = self._make(li, nd)
            self.protos[li] = fresh
            fresh.on_recover(ctx)
        else:  # JOIN
            self.alive[li] = True
            self.epoch[li] += 1
            self.storage[li] = {}  # a new session: nothing survives from an earlier one
            joiner: Protocol = self._make(li, nd)
            self.protos[li] = joiner
            joiner.on_join(ctx, arg if arg >= 0 else None)
        self._life.append((now, kind, nd, arg, q))

    # --- the window's record ----------------------------------------------------------------

    def _fired(
        self,
        w: Window,
        skipped: list[int],
        t_seq: np.ndarray,
        late_rows: list[tuple[int, int, int, Any, int]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], np.ndarray]:
        tt, tn, tid, _ = w.timers
        tags = w.tags
        if skipped:
            idx = np.flatnonzero(t_seq >= 0)  # the fired ones (a skipped timer took no seq)
            tt, tn, tid, t_seq = tt[idx], tn[idx], tid[idx], t_seq[idx]
            tags = [tags[i] for i in idx.tolist()]
        if not late_rows:
            return tt, tn, tid, tags, t_seq
        lw, lnode, lids, ltags, lseq = zip(*late_rows, strict=True)
        return (
            np.concatenate([tt, np.array(lw, dtype=np.int64)]),
            np.concatenate([tn, np.array(lnode, dtype=np.int64)]),
            np.concatenate([tid, np.array(lids, dtype=np.int64)]),
            [*tags, *ltags],
            np.concatenate([t_seq, np.array(lseq, dtype=np.int64)]),
        )

    def _take_life(self) -> list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]]:
        if not self._life:
            return []
        lt, lk, ln, la, lq = (np.array(c, dtype=np.int64) for c in zip(*self._life, strict=True))
        self._life = []
        out = []
        for kind in np.unique(lk).tolist():
            m = lk == kind
            out.append((lt[m], kind, ln[m], la[m], lq[m]))
        return out

    def _take_obs(self) -> list[Obs]:
        ob = self.ctx._obs
        if not ob:
            return []
        self.ctx._obs = []
        ot, onode, oname, oval, opeer, oref, oseq, ocode = zip(*ob, strict=True)
        return [
            Obs(
                np.array(ot, dtype=np.int64),
                np.array(onode, dtype=np.int64),
                list(oname),
                per_node_values(list(oval), list(ocode)),
                np.array(opeer, dtype=np.int64),
                np.array(oref, dtype=np.int64),
                np.array(oseq, dtype=np.int64),
            )
        ]


def run_events(
    driver: PerNodeDriver, ctx: Any, seq_p: list[int], seq_t: list[int], seq_n: list[int],
    seq_li: list[int], seq_k: list[int], m_src: list[int], m_cor: list[bool],
    m_id: list[int], m_pl: list[Any], t_id: list[int], t_ep: list[int], ttags: list[Any],
    l_kind: list[int], l_arg: list[int], m_seq: list[int], t_seq: list[int],
    crashed_m: list[int], skipped_t: list[int], late_rows: list[Any], order: np.ndarray,
    keys: list[np.ndarray], pos: list[int],
) -> None:
    """The event loop of :meth:`PerNodeDriver.run`, in pure Python: the reference, and the
    fallback of its compiled twin ``raysim.engine._hotpath.run_events`` (same arguments,
    same calls in the same order). On an exception ``pos[0]`` is the event being handled
    (-1 once every event ran)."""
    protos, alive, epoch, nseq = driver.protos, driver.alive, driver.epoch, driver.event_seq
    cancelled = driver.cancelled
    late = ctx._late
    i = -1
    # NOTE: the priorities as locals and the event's index from a range: the loop runs
    # once per event, and global lookups and enumerate's tuples cost a measurable share.
    msg_p, timer_p = P_MSG, P_TIMER
    try:
        for i, p, t, nd, li, k in zip(
            range(len(seq_p)), seq_p, seq_t, seq_n, seq_li, seq_k, strict=True
        ):
            if late:
                j = order[i]
                driver._run_late(tuple(int(c[j]) for c in keys), late_rows)
            if p == msg_p:
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
            elif p == timer_p:
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
                driver._lifecycle(t, nd, l_kind[k], l_arg[k])
        i = -1
        while late:
            driver._run_late(None, late_rows)
    except Exception:
        pos[0] = i
        raise


def _describe(
    p: int, k: int, m_src: np.ndarray, m_pl: list[Any], ttags: list[Any], l_kind: np.ndarray
) -> str:
    if p < 0:
        return "an in-window timer"
    if p == P_TIMER:
        return f"timer {ttags[k]!r}"
    if p == P_MSG:
        return f"message {m_pl[k]!r} from node {m_src[k]}"
    names = {START: "start", CRASH: "crash", RECOVER: "recover", JOIN: "join", LEAVE: "leave"}
    return names.get(l_kind[k], "lifecycle event")


__all__ = ["PerNodeDriver", "check_destinations", "run_events"]
