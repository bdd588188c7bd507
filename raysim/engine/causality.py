"""The engine's own Lamport and vector clocks (``[log] causality``), a window at a time.

Theory of operation
-------------------
With causality tracking on, the engine keeps a clock for every node, as Algorithms 5 and 6
of the course (Lamport 1978; Fidge 1988, Mattern 1989) prescribe, without the protocol
doing anything: the sender's clock at each send travels with the message (the ``clock``
column of :class:`~raysim.network.router.Messages`, so it crosses shards with the batch),
and every row of the log gets its node's clock (``lamport``; in vector mode ``vclock``).

Which events tick (the table is also in :mod:`raysim.log.schema` and the README):

=========================================  =====================================
rows                                       clock
=========================================  =====================================
``start``, ``crash``, ``recover``,         local event: ``L ← L + 1``,
``join``, ``leave``, ``timer``             ``V[i] ← V[i] + 1``
``send``                                   ticks; the message carries the result
``deliver``                                ``L ← max(L, m.L) + 1``, ``V ← max(V,
                                           m.V)``, ``V[i] ← V[i] + 1``
``obs``, ``corrupt``, ``drop``/``crashed``  the node's current clock (no tick)
``drop``/``loss``, ``drop``/``partition``,  the clock of the send they decide about
``duplicate``, ``byzantine``
=========================================  =====================================

The clock persists across a crash: the engine's clock is the oracle of the run's
happens-before relation, which is program order at a node over the whole run.

NOTE: handlers run first and the clocks are computed afterwards, vectorised, for the whole
window. This is exact because a message sent in a window is delivered at least one
lookahead later, i.e. in a later window, so every delivery's piggybacked clock is known
before its window starts. Ordered by (node, seq), a node's clock after its ``k``-th event
of the window is ``L_k = max(L_{k-1}, m_k) + t_k`` (``m_k`` the message's Lamport time for
a delivery, ``t_k`` 1 if the event ticks). With ``T_k`` the ticks so far, ``L_k - T_k =
max(L_{k-1} - T_{k-1}, m_k - T_{k-1})``: a prefix maximum, computed for every node at once
by :func:`segmented_max` (one ``np.maximum.accumulate``). The vector clock's other entries
are a prefix maximum of the delivered vectors, its own entry the count of ticks.

Vector mode keeps an ``n``-entry int64 vector per local node and per message in flight,
and logs one per row: memory and bytes grow with ``n`` (see the README's performance
section); it is meant for hundreds to a few thousand nodes.
"""

from __future__ import annotations

import numpy as np

from raysim.engine.driver import Record
from raysim.engine.order import Window
from raysim.log.eventlog import EventLog
from raysim.network.router import Messages


def segmented_max(values: np.ndarray, first: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Running maximum along axis 0 that restarts where ``first`` is True.

    ``values`` are non-negative int64 (1-D, or 2-D for one running maximum per column); row
    0 must start a segment; with ``inplace`` the result overwrites ``values`` (which may be
    a view). NOTE: segment ``s`` is lifted by ``s`` times the value range, so one plain
    ``np.maximum.accumulate`` never carries a maximum across a segment boundary.
    """
    if not len(values):
        return values
    seg = np.cumsum(first) - 1
    span = int(values.max()) + 1
    if int(seg[-1]) * span >= 1 << 62:  # pragma: no cover - needs ~2^62 events
        raise OverflowError("clock values too large for the segmented maximum")
    lift = seg * span
    if values.ndim == 2:
        lift = lift[:, None]
    out = values if inplace else values.copy()
    out += lift
    np.maximum.accumulate(out, axis=0, out=out)
    out -= lift
    return out


class Causality:
    """The clocks of a shard's nodes ``lo..hi-1`` in a run of ``n_nodes`` nodes.

    ``mode`` is ``"lamport"`` or ``"vector"``. :meth:`window` stamps a window's events (in
    the shard's log) and its sends (their ``clock`` column) after the handlers ran.
    """

    def __init__(self, mode: str, lo: int, hi: int, n_nodes: int) -> None:
        self.lo = lo
        self.vector = mode == "vector"
        self.width = 1 + (n_nodes if self.vector else 0)
        self.lamport = np.zeros(hi - lo, dtype=np.int64)
        self.vclock = np.zeros((hi - lo, n_nodes if self.vector else 0), dtype=np.int64)

    def window(self, w: Window, rec: Record, sends: Messages | None, log: EventLog) -> None:
        """Compute the clocks of every event of the window ``w`` the driver handled.

        ``w.msgs[-1]`` is the arrivals' clock column (the shard appends it to its inbox).
        """
        nodes, seqs, ticks, msg = [], [], [], []
        for _, _, nd, _, q in rec.life:
            nodes.append(nd)
            seqs.append(q)
            ticks.append(np.ones(len(nd), dtype=bool))
            msg.append(np.full(len(nd), -1, dtype=np.int64))
        mcols = w.msgs
        n_m = len(mcols[0])
        if n_m:
            handled = ~mcols[6].astype(bool)  # a corrupt copy is dropped, not handled
            handled[rec.crashed] = False
            nodes.append(mcols[2])
            seqs.append(rec.msg_seq)
            ticks.append(handled)
            msg.append(np.where(handled, np.arange(n_m), -1))
        _, tn, _, _, tseq = rec.fired
        nodes.append(tn)
        seqs.append(tseq)
        ticks.append(np.ones(len(tn), dtype=bool))
        msg.append(np.full(len(tn), -1, dtype=np.int64))
        for o in rec.obs:
            nodes.append(o.node)
            seqs.append(o.seq)
            ticks.append(np.zeros(len(o.node), dtype=bool))
            msg.append(np.full(len(o.node), -1, dtype=np.int64))
        n_s = len(sends) if sends is not None else 0
        if sends is not None and n_s:
            nodes.append(sends.src)
            seqs.append(sends.seq)
            ticks.append(np.ones(n_s, dtype=bool))
            msg.append(np.full(n_s, -1, dtype=np.int64))
        node = np.concatenate(nodes).astype(np.int64)
        if not len(node):
            return
        seq = np.concatenate(seqs).astype(np.int64)
        order = np.lexsort((seq, node))
        node, seq = node[order], seq[order]
        tick = np.concatenate(ticks)[order].astype(np.int64)
        mi = np.concatenate(msg)[order]
        clock = self._clocks(node, tick, mi, mcols[-1] if n_m else None)
        log.stamp(node, seq, clock)
        if sends is not None and n_s:
            # The sends' rows, found by (node, seq) in the sorted window.
            key = (node << 32) | seq
            at = np.searchsorted(key, (sends.src.astype(np.int64) << 32) | sends.seq)
            sends.clock = clock[at]

    def _clocks(
        self, node: np.ndarray, tick: np.ndarray, mi: np.ndarray, arrived: np.ndarray | None
    ) -> np.ndarray:
        """The clock of each of the window's events, sorted by (node, seq); updates state."""
        m = len(node)
        li = node - self.lo
        first = np.ones(m, dtype=bool)
        first[1:] = node[1:] != node[:-1]
        last = np.ones(m, dtype=bool)
        last[:-1] = first[1:]
        starts = np.flatnonzero(first)
        ticks = np.cumsum(tick)
        before = ticks - tick  # T_{k-1}, cumulated over the whole window
        base = np.repeat(before[starts], np.diff(np.append(starts, m)))
        t_in = ticks - base  # T_k within the node's segment
        t_prev = t_in - tick  # T_{k-1} within the segment
        out = np.empty((m, self.width), dtype=np.int64)
        got = mi >= 0
        # Lamport: A_k = max(A_{k-1}, m_k - T_{k-1}), A_{-1} = the node's clock; L_k = A_k + T_k.
        val = np.zeros(m, dtype=np.int64)
        if arrived is not None and got.any():
            val[got] = np.maximum(arrived[mi[got], 0] - t_prev[got], 0)
        val[first] = np.maximum(val[first], self.lamport[li[first]])
        lam = segmented_max(val, first) + t_in
        out[:, 0] = lam
        self.lamport[li[last]] = lam[last]
        if self.vector:
            vec = out[:, 1:]  # NOTE: computed in place, in the rows the log will take
            vec.fill(0)
            if arrived is not None and got.any():
                vec[got] = arrived[mi[got], 1:]
            vec[first] = np.maximum(vec[first], self.vclock[li[first]])
            own = self.vclock[li, node] + t_in  # (the nodes' clocks before the window)
            segmented_max(vec, first, inplace=True)
            vec[np.arange(m), node] = own
            self.vclock[li[last]] = vec[last]
        return out
