"""The fault-injecting router: one window's sends in, deliveries per destination shard out.

Theory of operation
-------------------
The router sees a :class:`Messages` batch of raw sends (send time, source, destination,
per-sender sequence number, payload) and decides, with numpy over the whole batch, for each
message: whether a partition cuts it, whether it is lost, whether the network duplicates it,
and for each copy its delay and whether it arrives corrupted. Every decision is drawn from
:func:`raysim.values.rng.uniform_array` keyed by (run seed, decision, message id, copy), so it is a
function of the message's identity alone: never of the batch it came in, the order of the
batch, the shard that sent it or where the router runs. Each decision is logged (``send``
with the chosen delay, ``drop`` with its reason, ``duplicate``); the receiver logs
``deliver``, ``corrupt`` or ``drop``/``crashed`` when the copy arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raysim.log.eventlog import EventLog
from raysim.log.schema import DROP, DUPLICATE, SEND
from raysim.network.byzantine import ByzantineFilter
from raysim.network.faults import Faults, LogNormalDelay, parse_node_set
from raysim.values.rng import derive, uniform_array

# Decision streams: one per kind of random choice, so they never correlate.
_LOSS, _DUP, _DELAY, _DELAY2, _JITTER, _CORRUPT = range(0x4C00, 0x4C06)

SEQ_BITS = 32


@dataclass
class Messages:
    """A batch of messages as columns. Raw sends have ``copy = 0`` and ``corrupt = False``.

    ``time`` is the send time for raw sends and the delivery time once routed. ``type_idx``
    indexes ``type_names`` (the sender's string table), so batches from different shards
    never need a shared numbering. ``seq`` and ``cause`` (raw sends only; routing does not
    carry them on) are the send's own per-node event number and that of the event whose
    handler sent it (see :mod:`raysim.log.schema`).
    """

    time: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    msg_id: np.ndarray
    type_idx: np.ndarray
    type_names: list[str]
    payload: list[Any]
    copy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    corrupt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    fields: tuple[np.ndarray, ...] = ()  # payload columns of a columnar protocol
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cause: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # The sender's clocks at each send when causality is tracked (``[log] causality``):
    # one row per message, the Lamport time then (vector mode) the vector clock; routing
    # carries it to every copy. None when causality is not tracked.
    clock: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.time)

    def select(self, idx: np.ndarray | None) -> Messages:
        """The messages at positions ``idx`` (an index array), in that order; all of them
        (sharing this batch's columns, which are never written in place) if None."""
        pl = self.payload
        if idx is None:
            return Messages(
                self.time, self.src, self.dst, self.msg_id, self.type_idx, self.type_names,
                list(pl), self.copy, self.corrupt, self.fields, clock=self.clock,
            )
        return Messages(
            self.time[idx],
            self.src[idx],
            self.dst[idx],
            self.msg_id[idx],
            self.type_idx[idx],
            self.type_names,
            [pl[i] for i in idx.tolist()] if pl else [],
            self.copy[idx],
            self.corrupt[idx],
            tuple(f[idx] for f in self.fields),
            clock=self.clock[idx] if self.clock is not None else None,
        )


@dataclass
class RouteStats:
    """Counts of the router's decisions."""

    sent: int = 0
    lost: int = 0
    partitioned: int = 0
    duplicated: int = 0
    corrupted: int = 0

    def add(self, other: RouteStats) -> None:
        """Accumulate another router's counts."""
        self.sent += other.sent
        self.lost += other.lost
        self.partitioned += other.partitioned
        self.duplicated += other.duplicated
        self.corrupted += other.corrupted


class Router:
    """Applies a :class:`~raysim.network.faults.Faults` model and a delay model to batches."""

    def __init__(
        self,
        seed: int,
        n_nodes: int,
        delay: Any,
        jitter: int,
        faults: Faults,
        bounds: np.ndarray,
        log: EventLog,
    ) -> None:
        self.n = n_nodes
        self.delay = delay
        self.jitter = jitter
        self.faults = faults
        self.bounds = bounds  # shard i hosts nodes bounds[i] .. bounds[i+1]-1
        self.log = log
        self.stats = RouteStats()
        self.keys = {s: derive(seed, s) for s in (_LOSS, _DUP, _DELAY, _DELAY2, _JITTER, _CORRUPT)}
        self.byzantine = ByzantineFilter(faults.byzantine, seed, n_nodes, log)
        self.partitions = []
        for i, p in enumerate(faults.partitions):
            a = parse_node_set(p.a, n_nodes, f"faults.partitions.{i}.a")
            b = ~a if p.b is None else parse_node_set(p.b, n_nodes, f"faults.partitions.{i}.b")
            end = p.end if p.end is not None else np.iinfo(np.int64).max
            self.partitions.append((p.start, end, a, b, p.direction == "both"))
        # Nothing to decide but the delay: no partitions, loss, duplicates nor corruption.
        self.clean = not (self.partitions or faults.loss or faults.duplicate or faults.corrupt)

    def _delays(self, msg_id: np.ndarray, copy: np.ndarray) -> np.ndarray:
        u = uniform_array(self.keys[_DELAY], msg_id, copy)
        # Only the log-normal needs a second uniform (Box-Muller); skip the hashing otherwise.
        two = isinstance(self.delay, LogNormalDelay)
        u2 = uniform_array(self.keys[_DELAY2], msg_id, copy) if two else u
        d = self.delay.sample(u, u2)
        if self.jitter:
            uj = uniform_array(self.keys[_JITTER], msg_id, copy)
            d = d + np.minimum((uj * (self.jitter + 1)).astype(np.int64), self.jitter)
        return d

    def route(self, out: Messages) -> Messages:
        """Decide the fate of every message in ``out``; returns the copies to deliver."""
        n = len(out)
        self.stats.sent += n
        if self.clean:
            return self._route_clean(out)
        f = self.faults
        t, src, dst, mid = out.time, out.src, out.dst, out.msg_id
        cut = np.zeros(n, dtype=bool)
        for start, end, a, b, both in self.partitions:
            active = (t >= start) & (t < end)
            if active.any():
                c = a[src] & b[dst]
                if both:
                    c |= b[src] & a[dst]
                cut |= active & c
        lost = np.zeros(n, dtype=bool)
        if f.loss > 0:
            lost = ~cut & (uniform_array(self.keys[_LOSS], mid) < f.loss)
        ok = ~(cut | lost)
        zeros = np.zeros(n, dtype=np.int64)
        d0 = self._delays(mid, zeros)
        dup = np.zeros(n, dtype=bool)
        if f.duplicate > 0:
            dup = ok & (uniform_array(self.keys[_DUP], mid) < f.duplicate)

        log = self.log
        codes = np.zeros(0, dtype=np.int32)
        if log.messages and out.clock is not None:  # the router's rows carry the send's clocks
            log.stamp(out.src, out.seq, out.clock)
        if log.messages:
            codes = log.strings.codes(out.type_names)[out.type_idx]
            # (a batch built by hand, without seq and cause, logs -1 for both)
            seq = out.seq if len(out.seq) == n else np.full(n, -1, dtype=np.int64)
            cause = out.cause if len(out.cause) == n else -1
            log.add(t, SEND, src, seq, dst, mid, codes, -1, np.where(ok, d0, np.nan), cause)
            for mask, reason in ((lost, "loss"), (cut, "partition")):
                if mask.any():
                    r = log.strings.code(reason)
                    log.add(
                        t[mask], DROP, src[mask], seq[mask], dst[mask], mid[mask], codes[mask], r
                    )
        self.stats.lost += int(lost.sum())
        self.stats.partitioned += int(cut.sum())

        if ok.all():  # NOTE: nothing cut or lost (the common case): no gather of every column
            deliv = out.select(None)
            deliv.time = t + d0
        else:
            keep = np.flatnonzero(ok)
            deliv = out.select(keep)
            deliv.time = t[keep] + d0[keep]
        deliv.copy = np.zeros(len(deliv), dtype=np.int8)
        if dup.any():
            di = np.flatnonzero(dup)
            ones = np.ones(len(di), dtype=np.int64)
            d1 = self._delays(mid[di], ones)
            if log.messages:
                log.add(
                    t[di], DUPLICATE, src[di], seq[di], dst[di], mid[di], codes[di], -1, d1
                )
            extra = out.select(di)
            extra.time = t[di] + d1
            extra.copy = np.ones(len(di), dtype=np.int8)
            deliv = concat([deliv, extra])
            self.stats.duplicated += len(di)
        if f.corrupt > 0:
            u = uniform_array(self.keys[_CORRUPT], deliv.msg_id, deliv.copy.astype(np.int64))
            deliv.corrupt = u < f.corrupt
            self.stats.corrupted += int(deliv.corrupt.sum())
        else:
            deliv.corrupt = np.zeros(len(deliv), dtype=bool)
        return self.byzantine.apply(out, deliv)

    def _route_clean(self, out: Messages) -> Messages:
        """:meth:`route` when only delays are drawn: every message is delivered once, intact
        (the same log rows and deliveries, without the masks of the general path)."""
        n = len(out)
        d0 = self._delays(out.msg_id, np.zeros(n, dtype=np.int64))
        log = self.log
        if log.messages:
            if out.clock is not None:
                log.stamp(out.src, out.seq, out.clock)
            codes = log.strings.codes(out.type_names)[out.type_idx]
            seq = out.seq if len(out.seq) == n else np.full(n, -1, dtype=np.int64)
            cause = out.cause if len(out.cause) == n else -1
            log.add(
                out.time, SEND, out.src, seq, out.dst, out.msg_id, codes, -1,
                d0.astype(np.float64), cause,
            )
        deliv = out.select(None)
        deliv.time = out.time + d0
        deliv.copy = np.zeros(n, dtype=np.int8)
        deliv.corrupt = np.zeros(n, dtype=bool)
        return self.byzantine.apply(out, deliv)

    def split(self, deliv: Messages) -> list[Messages | None]:
        """Deliveries grouped by destination shard (None where a shard gets nothing)."""
        shards = len(self.bounds) - 1
        if shards == 1:
            return [deliv if len(deliv) else None]
        which = np.searchsorted(self.bounds, deliv.dst, side="right") - 1
        order = np.argsort(which, kind="stable")
        counts = np.bincount(which, minlength=shards)
        out: list[Messages | None] = []
        pos = 0
        for s in range(shards):
            c = int(counts[s])
            out.append(deliv.select(order[pos : pos + c]) if c else None)
            pos += c
        return out


def concat(batches: list[Messages]) -> Messages:
    """One batch of several that share a type table (e.g. the outputs of one router)."""
    if len(batches) == 1:
        return batches[0]
    names = batches[0].type_names
    assert all(b.type_names is names for b in batches)
    return Messages(
        np.concatenate([b.time for b in batches]),
        np.concatenate([b.src for b in batches]),
        np.concatenate([b.dst for b in batches]),
        np.concatenate([b.msg_id for b in batches]),
        np.concatenate([b.type_idx for b in batches]),
        names,
        [p for b in batches for p in b.payload],
        np.concatenate([b.copy for b in batches]),
        np.concatenate([b.corrupt for b in batches]),
        tuple(np.concatenate(cols) for cols in zip(*(b.fields for b in batches), strict=True)),
        clock=(
            np.concatenate([b.clock for b in batches])
            if batches[0].clock is not None
            else None
        ),
    )
