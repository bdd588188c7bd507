"""The columnar path of the engine: a window's events handed to a BatchProtocol in batches.

Theory of operation
-------------------
Inside a window no event at one node can affect another node (messages sent now arrive
in a later window), so the only order that matters is each node's own. The window's events,
already sorted by the engine's total order, are split by *rank*: the k-th event of every
node forms batch k, and batches are handled in rank order. Every batch holds at most one
event per node, so a handler can update the nodes' state columns with numpy and the result
is, element for element, what the per-node loop would compute. A timer set to fire inside
the current window is merged into the events not yet handled and the ranks are recomputed.

Random draws come from the same per-node SplitMix64 streams as :class:`raysim.values.rng.NodeRng`
(:func:`raysim.values.rng.stream_words`), and sends, timers and observations get the same ids, so
a columnar protocol and its per-node twin write the same event log (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from raysim.engine.observe import batch_values, check_name
from raysim.log.eventlog import ObsValues
from raysim.values.rng import stream_words, words_to_range, words_to_unit

if TYPE_CHECKING:
    from raysim.engine.shard import Shard


def occurrence(keys: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements come before it (0 for the first)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    idx = np.arange(n, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    start[1:] = s[1:] != s[:-1]
    first = np.maximum.accumulate(np.where(start, idx, 0))
    occ = np.empty(n, dtype=np.int64)
    occ[order] = idx - first
    return occ


class EventBatch:
    """A batch of events at distinct nodes (see :class:`raysim.api.protocol.BatchEvents`)."""

    __slots__ = ("cause", "fields", "li", "mtype", "node", "src", "tags", "time")

    def __init__(self, node: np.ndarray, li: np.ndarray, time: np.ndarray) -> None:
        self.node = node
        self.li = li
        self.time = time
        self.cause = np.zeros(0, dtype=np.int64)
        self.src = np.zeros(0, dtype=np.int64)
        self.mtype = np.zeros(0, dtype=np.int64)
        self.fields: dict[str, np.ndarray] = {}
        self.tags: list[Any] = []

    def __len__(self) -> int:
        return len(self.node)


class BatchShardContext:
    """The :class:`~raysim.api.protocol.BatchContext` of one shard: per-node counters as arrays."""

    def __init__(self, shard: Shard, rng_keys: list[int]) -> None:
        self.shard = shard
        self.n_nodes = shard.spec.n_nodes
        self.lo = shard.lo
        n_local = shard.hi - shard.lo
        self.send_seq = np.zeros(n_local, dtype=np.int64)
        self.timer_seq = np.zeros(n_local, dtype=np.int64)
        self.event_seq = np.zeros(n_local, dtype=np.int64)  # each node's next ``seq``
        self._scratch = np.zeros(n_local, dtype=np.int64)  # for :meth:`_occurrence`
        self.handling = np.full(n_local, -1, dtype=np.int64)  # seq of the event being handled
        self.rng_keys = np.array(rng_keys, dtype=np.uint64)
        self.rng_ctr = np.zeros(n_local, dtype=np.int64)
        self.adj = shard.topology.adj
        self.deg = shard.topology.degree
        self.field_names: tuple[str, ...] = tuple(getattr(shard.proto_cls, "fields", ()))
        self.window_end = 0
        self.sends: list[tuple[np.ndarray, ...]] = []
        self.timers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]] = []
        self.late: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]]] = []
        self.obs: list[
            tuple[np.ndarray, np.ndarray, str, ObsValues, np.ndarray, np.ndarray, np.ndarray]
        ] = []

    def _occurrence(self, li: np.ndarray) -> np.ndarray | None:
        """:func:`occurrence` of local indexes, or None when they are distinct.

        NOTE: nearly every call has distinct nodes (one event per node per batch); a
        scatter and a gather over a scratch array prove it without the sort.
        """
        n = len(li)
        pos = np.arange(n, dtype=np.int64)
        self._scratch[li] = pos
        if (self._scratch[li] == pos).all():
            return None
        return occurrence(li)

    @staticmethod
    def _take(counter: np.ndarray, li: np.ndarray, occ: np.ndarray | None) -> np.ndarray:
        """Each element's next number from ``counter`` (advanced by the elements)."""
        q = counter[li]
        if occ is None:
            counter[li] = q + 1
            return q
        np.add.at(counter, li, 1)
        return q + occ

    def next_seq(self, li: np.ndarray, occ: np.ndarray | None = None) -> np.ndarray:
        """Take the next ``seq`` of each node at ``li`` (``occ``: see :meth:`_occurrence`)."""
        return self._take(self.event_seq, li, occ)

    def send(self, src: Any, time: Any, dst: Any, mtype: Any, **fields: Any) -> np.ndarray:
        """One message per element of ``src`` (ids in send order per node); returns the ids."""
        src = np.asarray(src, dtype=np.int64)
        n = len(src)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        li = src - self.lo
        occ = self._occurrence(li)
        seq = self._take(self.send_seq, li, occ)
        eseq = self.next_seq(li, occ)
        unknown = set(fields) - set(self.field_names)
        if unknown:
            raise ValueError(
                f"unknown message field {sorted(unknown)[0]!r}; fields: {self.field_names}"
            )
        cols = tuple(
            np.broadcast_to(np.asarray(fields.get(f, 0.0), dtype=np.float64), (n,))
            for f in self.field_names
        )
        self.sends.append(
            (
                np.broadcast_to(np.asarray(time, dtype=np.int64), (n,)),
                src,
                np.broadcast_to(np.asarray(dst, dtype=np.int64), (n,)),
                seq,
                np.broadcast_to(np.asarray(mtype, dtype=np.int32), (n,)),
                eseq,
                self.handling[li],
                *cols,
            )
        )
        return (src << 32) | seq

    def set_timer(self, node: Any, when: Any, tag: str) -> None:
        """A timer per element at absolute time ``when``."""
        node = np.asarray(node, dtype=np.int64)
        n = len(node)
        if n == 0:
            return
        when = np.broadcast_to(np.asarray(when, dtype=np.int64), (n,))
        li = node - self.lo
        tid = self._take(self.timer_seq, li, self._occurrence(li))
        ep = self.shard.epoch_np[li]
        late = when < self.window_end
        if late.any():
            m = late
            self.late.append((when[m], node[m], tid[m], ep[m], [tag] * int(m.sum())))
            m = ~late
            if m.any():
                self.timers.append((when[m], node[m], tid[m], ep[m], [tag] * int(m.sum())))
        else:
            self.timers.append((when.copy(), node, tid, ep, [tag] * n))

    def emit(
        self, node: Any, time: Any, name: str, value: Any, peer: Any = -1, ref: Any = -1
    ) -> None:
        """One observation per element (milestones are counted at the window's end).

        Arguments are checked here (see :func:`raysim.engine.observe.batch_values`).
        """
        node = np.asarray(node, dtype=np.int64)
        n = len(node)
        if n == 0:
            return
        check_name(name)
        values = batch_values(value, n)
        t = np.broadcast_to(np.asarray(time, dtype=np.int64), (n,))
        peer_a = np.broadcast_to(_ints(peer, "peer"), (n,))
        ref_a = np.broadcast_to(_ints(ref, "ref"), (n,))
        li = node - self.lo
        seq = self.next_seq(li, self._occurrence(li))
        self.obs.append((t, node, name, values, peer_a, ref_a, seq))

    def _words(self, node: np.ndarray) -> np.ndarray:
        li = np.asarray(node, dtype=np.int64) - self.lo
        self.rng_ctr[li] += 1
        return stream_words(self.rng_keys[li], self.rng_ctr[li])

    def random(self, node: Any) -> np.ndarray:
        """One float in [0, 1) per (distinct) node."""
        return words_to_unit(self._words(node))

    def randrange(self, node: Any, n: int) -> np.ndarray:
        """One int in [0, n) per (distinct) node."""
        return words_to_range(self._words(node), n)

    def random_peer(self, node: Any) -> np.ndarray:
        """One random neighbour per (distinct) node, never the node itself."""
        node = np.asarray(node, dtype=np.int64)
        w = self._words(node)
        if self.adj is None:
            v = words_to_range(w, self.n_nodes - 1)
            return v + (v >= node)
        return self.adj[node - self.lo, words_to_range(w, self.deg)].astype(np.int64)

    def take_late(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any]] | None:
        """Timers set to fire inside the current window since the last call, as columns."""
        if not self.late:
            return None
        parts, self.late = self.late, []
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            [t for p in parts for t in p[4]],
        )


def _ints(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        raise TypeError(f"emit: {what} must be ints, got {a.dtype} of shape {a.shape}")
    return a.astype(np.int64)


def process_window(
    shard: Shard,
    keys: list[np.ndarray],
    order: np.ndarray,
    offsets: tuple[int, int],
    life_cols: tuple[np.ndarray, np.ndarray],
    mcols: list[np.ndarray],
    timers: list[Any],
) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
    """Handle a window's sorted events batch by batch.

    Returns the crashed messages, the skipped timers, and the ``seq`` each message's arrival
    and each fired timer took (by message / timer position).

    ``keys`` are the sort columns (time, prio, node, k1, k2) of every event, ``order`` the
    sorted positions, ``offsets`` where messages and timers start among the positions.
    ``timers`` is the list [time, node, id, epoch, tags] of due timers; in-window timers
    are appended to it (and to ``keys``) as they are set.
    """
    from raysim.engine.context import P_MSG, P_NODE, P_TIMER

    ctx, proto = shard.bctx, shard.bproto
    m_off, t_off = offsets
    crashed: list[np.ndarray] = []
    skipped: list[np.ndarray] = []
    remaining = order
    lo = shard.lo
    m_seq = np.zeros(len(mcols[0]), dtype=np.int64)
    t_seq = np.zeros(len(timers[0]), dtype=np.int64)
    while len(remaining):
        rank = occurrence(keys[2][remaining])
        restart = False
        for r in range(int(rank.max()) + 1):
            g = remaining[rank == r]
            p = keys[1][g]
            lpos = g[p == P_NODE]  # lifecycle events sit first, so positions index their columns
            if len(lpos):
                kind, arg = life_cols[0][lpos], life_cols[1][lpos]
                shard.lifecycle_batch(keys[0][lpos], keys[2][lpos], kind, arg)
            msg = g[p == P_MSG] - m_off
            if len(msg):
                dst = mcols[2][msg]
                q = ctx.next_seq(dst - lo)
                m_seq[msg] = q
                ok = ~mcols[6][msg]  # corrupt copies are dropped by the receiver's checksum
                dead = ~shard.alive_np[dst - lo]
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
                    shard.call_batch(proto.on_message, ev, "messages")
            tim = g[p == P_TIMER] - t_off
            if len(tim):
                node = timers[1][tim]
                li = node - lo
                valid = timers[3][tim] == shard.epoch_np[li]
                if not valid.all():
                    skipped.append(tim[~valid])
                    tim, node, li = tim[valid], node[valid], li[valid]
                if len(tim):
                    q = ctx.next_seq(li)
                    t_seq[tim] = q
                    ctx.handling[li] = q
                    ev = EventBatch(node, li, timers[0][tim])
                    ev.cause = timers[2][tim]
                    tags = timers[4]
                    ev.tags = [tags[i] for i in tim.tolist()]
                    shard.call_batch(proto.on_timer, ev, "timers")
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
                rest = np.concatenate([remaining[rank > r], np.arange(start, start + n_new)])
                sub = np.lexsort(tuple(k[rest] for k in reversed(keys)))
                remaining = rest[sub]
                restart = True
                break
        if not restart:
            break
    cr = np.concatenate(crashed).tolist() if crashed else []
    sk = np.concatenate(skipped).tolist() if skipped else []
    return cr, sk, m_seq, t_seq
