"""The columnar driver: a window's events handed to a BatchProtocol in batches.

The driver owns its nodes' state as numpy arrays over the shard (who is up, session
epochs) plus the protocol's own columns and the :class:`~raysim.engine.batch.BatchShardContext`
(counters, random streams, what handlers send, set and emit). A window's events, sorted
by the total order of :mod:`raysim.engine.order`, are cut by *rank* (the k-th event of
every node forms batch k; see :mod:`raysim.engine.batch`) and each batch is handed to the
protocol's handler for its kind. The result is a :class:`~raysim.engine.driver.Record` in
the same columns as the per-node driver's, so both feed the shard's one logging path.
"""

from __future__ import annotations

import traceback
from itertools import chain
from typing import Any

import numpy as np

from raysim.api.protocol import ProtocolSpec
from raysim.engine.batch import BatchShardContext, EventBatch
from raysim.engine.context import node_keys
from raysim.engine.driver import Obs, Record
from raysim.engine.order import P_MSG, P_NODE, P_TIMER, Window
from raysim.engine.pernode import check_destinations
from raysim.engine.spec import RunSpec
from raysim.errors import ProtocolError
from raysim.log.eventlog import StringTable
from raysim.log.schema import CRASH, JOIN, LEAVE, RECOVER, START
from raysim.network.byzantine import byzantine_mask
from raysim.network.router import SEQ_BITS, Messages
from raysim.network.topology import Topology


class ColumnarDriver:
    """Drives one :class:`~raysim.api.protocol.BatchProtocol` object per shard."""

    def __init__(
        self, spec: RunSpec, protocol: ProtocolSpec, lo: int, hi: int, topology: Topology,
        rng_key: int, strings: StringTable,
    ) -> None:
        self.spec = spec
        self.lo, self.hi = lo, hi
        n_local = hi - lo
        cls: Any = protocol.cls
        self.message_types: tuple[str, ...] = tuple(cls.message_types)
        self._log_codes = strings.codes(self.message_types)  # message type -> log code
        self.alive = np.zeros(n_local, dtype=bool)
        self.epoch = np.zeros(n_local, dtype=np.int64)
        byz = spec.faults.byzantine
        if byz.behaviour is not None:  # the adversary variant, told which rows are Byzantine
            cls = cls.adversary(byz.behaviour)
        self.proto: Any = cls(protocol.make_params(spec.params), lo, hi)
        if byz.behaviour is not None:
            self.proto.byzantine = byzantine_mask(byz, spec.n_nodes, spec.seed)[lo:hi]
        self.ctx = BatchShardContext(
            spec.n_nodes, lo, hi, topology, tuple(getattr(cls, "fields", ())), self.epoch,
            node_keys(rng_key, lo, hi), seed=spec.seed,
        )
        self._life: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]] = []

    # --- the driver interface ------------------------------------------------------------

    def inbox_types(self, batch: Messages) -> np.ndarray:
        """The inbox's type column: the index into ``message_types`` (the handlers' mtype)."""
        return batch.type_idx

    def log_types(self, codes: np.ndarray) -> np.ndarray:
        """The log's ``msg_type`` codes of an inbox type column."""
        return self._log_codes[codes] if len(self._log_codes) else codes

    def alive_of(self, li: np.ndarray) -> np.ndarray:
        """Whether each local node ``li`` is up."""
        return self.alive[li]

    def alive_count(self) -> int:
        """How many local nodes are up."""
        return int(self.alive.sum())

    def take_timers(self) -> tuple[tuple[np.ndarray, ...], list[Any]] | None:
        """Timers set for later windows, as columns and tags."""
        parts = self.ctx.timers
        if not parts:
            return None
        self.ctx.timers = []
        cols = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
        return cols, list(chain.from_iterable(p[4] for p in parts))

    def take_sends(self) -> Messages | None:
        """The window's sends as a batch (type codes index ``message_types``)."""
        parts = self.ctx.sends
        if not parts:
            return None
        self.ctx.sends = []
        t, src, dst, seq, mtype, eseq, cause, *fields = (
            np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))
        )
        check_destinations(self.spec, t, src, dst)
        k = len(t)
        return Messages(
            t,
            src,
            dst,
            (src << SEQ_BITS) | seq,
            mtype.astype(np.int32),
            list(self.message_types),
            [],
            np.zeros(k, dtype=np.int8),
            np.zeros(k, dtype=bool),
            tuple(fields),
            eseq,
            cause,
        )

    def run(self, w: Window) -> Record:
        """Handle ``w`` batch by batch, in rank order (in-window timers merged in)."""
        ctx, proto = self.ctx, self.proto
        ctx.window_end = w.end
        keys = list(w.keys)
        mcols = w.msgs
        timers: list[Any] = [*w.timers, w.tags]
        life_kind, life_arg = w.life[2], w.life[4]
        m_off, t_off = w.m_off, w.t_off
        crashed: list[np.ndarray] = []
        skipped: list[np.ndarray] = []
        remaining = w.order
        lo = self.lo
        m_seq = np.zeros(len(mcols[0]), dtype=np.int64)
        t_seq = np.zeros(len(timers[0]), dtype=np.int64)
        while len(remaining):
            rank = ctx.ranks(keys[2][remaining] - lo)  # None: one event per node
            restart = False
            for r in range(1 if rank is None else int(rank.max()) + 1):
                g = remaining if rank is None else remaining[rank == r]
                p = keys[1][g]
                lpos = g[p == P_NODE]  # lifecycle rows sit first, so positions index them
                if len(lpos):
                    self._lifecycle(keys[0][lpos], keys[2][lpos], life_kind[lpos], life_arg[lpos])
                msg = g[p == P_MSG] - m_off
                if len(msg):
                    dst = mcols[2][msg]
                    q = ctx.next_seq(dst - lo)
                    m_seq[msg] = q
                    ok = ~mcols[6][msg]  # corrupt copies are dropped by the receiver's checksum
                    dead = ~self.alive[dst - lo]
                    if dead.any():
                        crashed.append(msg[dead])
                    ok &= ~dead
                    msg = msg[ok]
                    if len(msg):
                        node = mcols[2][msg]
                        ctx.handling[node - lo] = q[ok]
                        ev = EventBatch(node, node - lo, mcols[0][msg])
                        ev.cause = mcols[3][msg]
                        ev.src = mcols[1][msg]
                        ev.mtype = mcols[4][msg]
                        ev.fields = {f: mcols[7 + i][msg] for i, f in enumerate(ctx.field_names)}
                        self._call(proto.on_message, ev, "messages")
                tim = g[p == P_TIMER] - t_off
                if len(tim):
                    node = timers[1][tim]
                    li = node - lo
                    valid = timers[3][tim] == self.epoch[li]
                    if not valid.all():
                        skipped.append(tim[~valid])
                        tim, node, li = tim[valid], node[valid], li[valid]
                    if len(tim):
                        q = ctx.next_seq(li)
                        t_seq[tim] = q
                        ctx.handling[li] = q
                        ev = EventBatch(node, li, timers[0][tim])
                        ev.cause = timers[2][tim]
                        ev.tags_from(timers[4], tim)
                        self._call(proto.on_timer, ev, "timers")
                late = ctx.take_late()
                if late is not None:
                    # Merge in-window timers into what is left and recompute the ranks.
                    start = len(keys[0])
                    n_new = len(late[0])
                    for i in range(4):
                        timers[i] = np.concatenate([timers[i], late[i]])
                    timers[4] = timers[4] + late[4]
                    t_seq = np.concatenate([t_seq, np.zeros(n_new, dtype=np.int64)])
                    new_keys = (
                        late[0],
                        np.full(n_new, P_TIMER),
                        late[1],
                        late[2],
                        np.zeros(n_new, np.int64),
                    )
                    for i in range(5):
                        keys[i] = np.concatenate([keys[i], new_keys[i].astype(np.int64)])
                    later = remaining[:0] if rank is None else remaining[rank > r]
                    rest = np.concatenate([later, np.arange(start, start + n_new)])
                    sub = np.lexsort(tuple(k[rest] for k in reversed(keys)))
                    remaining = rest[sub]
                    restart = True
                    break
            if not restart:
                break
        fired = np.ones(len(timers[0]), dtype=bool)
        if skipped:
            fired[np.concatenate(skipped)] = False
        tags = timers[4] if fired.all() else [timers[4][i] for i in np.flatnonzero(fired).tolist()]
        life, self._life = self._life, []
        obs = [Obs(*o) for o in ctx.obs]
        ctx.obs = []
        return Record(
            m_seq,
            np.concatenate(crashed) if crashed else np.zeros(0, dtype=np.int64),
            (timers[0][fired], timers[1][fired], timers[2][fired], tags, t_seq[fired]),
            life,
            obs,
        )

    # --- inside a window ---------------------------------------------------------------------

    def _call(self, handler: Any, ev: EventBatch, what: str) -> None:
        """Call a handler; an exception becomes a ProtocolError."""
        ev.node.flags.writeable = False  # one event per node: see BatchShardContext.handling_batch
        self.ctx.handling_batch(ev.node)
        try:
            handler(self.ctx, ev)
        except Exception:
            raise ProtocolError(
                self.spec.run_id,
                int(ev.node[0]),
                int(ev.time[0]),
                f"a batch of {len(ev)} {what} (first at node {int(ev.node[0])})",
                traceback.format_exc(),
            ) from None
        finally:
            self.ctx.handling_batch(None)

    def _lifecycle(
        self, time: np.ndarray, node: np.ndarray, kind: np.ndarray, arg: np.ndarray
    ) -> None:
        """Lifecycle events: start, crash, recover, join, leave (nodes distinct)."""
        ctx, proto = self.ctx, self.proto
        for k in (START, CRASH, RECOVER, JOIN, LEAVE):
            m = kind == k
            if not m.any():
                continue
            nd, t, a = node[m], time[m], arg[m]
            li = nd - self.lo
            if k in (CRASH, LEAVE):
                keep = self.alive[li]
            elif k in (RECOVER, JOIN):
                keep = ~self.alive[li]
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
                self.alive[li] = True
                self._call(proto.on_start, ev, "starts")
            elif k == CRASH:
                marks = len(ctx.sends), len(ctx.timers), len(ctx.obs), len(ctx.late)
                self._call(proto.on_crash, ev, "crashes")
                del (
                    ctx.sends[marks[0] :],
                    ctx.timers[marks[1] :],
                    ctx.obs[marks[2] :],
                    ctx.late[marks[3] :],
                )
                self.alive[li] = False
                self.epoch[li] += 1
            elif k == LEAVE:
                self._call(proto.on_leave, ev, "departures")
                self.alive[li] = False
                self.epoch[li] += 1
            elif k == JOIN:
                self.alive[li] = True
                self.epoch[li] += 1
                self._call(proto.on_join, ev, "joins")
            else:
                self.alive[li] = True
                self._call(proto.on_recover, ev, "recoveries")
            self._life.append((t, k, nd, a, q))


__all__ = ["ColumnarDriver"]
