"""The window loop: a block of simulated nodes in one process, its pending events and log.

Theory of operation
-------------------
A :class:`Shard` hosts nodes ``lo..hi-1``. Global time advances in *windows* ``[start, end)``
no longer than the network's minimum delay (conservative lookahead): a message sent inside
a window cannot arrive inside it, so at the start of a window every delivery due in it is
already known. :meth:`Shard.advance` takes the window's due events from the pending pools
(:mod:`raysim.engine.pending`: lifecycle rows, arrivals, timers), sorts them by the total
order of :mod:`raysim.engine.order`, and hands them to its *driver*, which calls the
handlers: :class:`~raysim.engine.pernode.PerNodeDriver` for a per-node
:class:`~raysim.api.protocol.Protocol`, :class:`~raysim.engine.columnar.ColumnarDriver` for
a :class:`~raysim.api.protocol.BatchProtocol` (the interface: :mod:`raysim.engine.driver`).
The driver's :class:`~raysim.engine.driver.Record` of the window is logged, counted and
checked against the milestones and the stop rule here, in one place, for both paths. With
``[log] causality`` on, :mod:`raysim.engine.causality` computes the window's clocks from
that record and the sends before anything is logged (the hooks: the inbox's clock column
and one call per window), so both paths get them without either driver knowing.

The network layer decides every fault: the router (:mod:`raysim.network.router`) the fate of
each send (partition, loss, delay, duplication, corruption) and the lifecycle schedule
(:mod:`raysim.network.lifecycle`, computed once per run by the runtime) who is up when; the
engine applies those decisions (a corrupt copy or one that reaches a node that is down is
logged, not handled).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raysim.api.protocol import BatchProtocol, ProtocolSpec
from raysim.engine.causality import Causality
from raysim.engine.columnar import ColumnarDriver
from raysim.engine.compiled import hotpath
from raysim.engine.driver import Driver, Record
from raysim.engine.milestones import Milestones
from raysim.engine.order import Window, order_window
from raysim.engine.pending import Pending
from raysim.engine.pernode import PerNodeDriver
from raysim.engine.spec import NEVER, Inbound, RunSpec, StepInfo
from raysim.log.eventlog import EventLog
from raysim.log.schema import CORRUPT, DELIVER, DROP, TIMER
from raysim.network.lifecycle import Schedule, lifecycle_schedule
from raysim.network.router import Messages, Router, RouteStats
from raysim.network.topology import Topology
from raysim.values.rng import derive

_RNG_STREAM = 0x5EED
GC_WINDOWS, GC_MAX_WINDOWS = 256, 4096  # windows between cycle collections: first, longest

__all__ = ["NEVER", "Inbound", "RunSpec", "Shard", "StepInfo"]


class Shard:
    """A block of simulated nodes: pending events, the window loop, its driver and log."""

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
        self.log = EventLog(log_path, spec.log_level, spec.batch_rows, spec.causality)
        self.router = (
            Router(spec.seed, spec.n_nodes, spec.delay, spec.jitter, spec.faults, bounds, self.log)
            if route_here
            else None
        )
        self.topology = Topology(
            spec.topology, spec.seed, spec.n_nodes, spec.degree, self.lo, self.hi
        )
        columnar = issubclass(protocol.cls, BatchProtocol)
        make = ColumnarDriver if columnar else PerNodeDriver
        self.driver: Driver = make(
            spec, protocol, self.lo, self.hi, self.topology, derive(spec.seed, _RNG_STREAM),
            self.log.strings,
        )
        self.causality = (
            Causality(spec.causality, self.lo, self.hi, spec.n_nodes)
            if spec.causality != "none"
            else None
        )
        # Pending events. inbox columns: time, src, dst, msg_id, type, copy, corrupt; + fields;
        # + the senders' clocks (one 2-D column) when causality is tracked
        n_fields = len(getattr(protocol.cls, "fields", ()))
        self.inbox = Pending(7 + n_fields + (self.causality is not None))
        self.timers = Pending(4)  # time, node, timer id, epoch; + tags
        if schedule is None:
            schedule = lifecycle_schedule(spec)
        sched = schedule.for_nodes(self.lo, self.hi)
        self._life = [sched.time, sched.node, sched.kind, sched.seq, sched.arg]
        self._life_pos = 0
        self.milestones = Milestones(
            getattr(protocol.cls, "milestones", ()), spec.stop_when, self.lo, n_local
        )
        self.counts = {
            "delivered": 0,
            "corrupt": 0,
            "dropped_crashed": 0,
            "timers": 0,
            "observations": 0,
        }
        self._windows = 0
        self._hot = hotpath()  # the compiled module (the window's order), or None
        self._gc_every = GC_WINDOWS  # windows between cycle collections (see _collect)
        self._gc_next = GC_WINDOWS
        self.stopped = False
        self._own: Messages | None = None  # this shard's deliveries to itself, kept here

    @property
    def storage(self) -> list[dict[str, Any]]:
        """The per-node driver's stable storage, by local index (for tests)."""
        assert isinstance(self.driver, PerNodeDriver)
        return self.driver.storage

    # --- the window step -------------------------------------------------------------------

    def receive(self, batches: Sequence[Messages | list[Messages] | None]) -> None:
        """Accept routed deliveries for local nodes."""
        flat: list[Messages] = []
        for b in batches:
            if isinstance(b, list):  # a router actor hands over a list of batches
                flat.extend(b)
            elif b is not None:
                flat.append(b)
        for b in flat:
            if len(b):
                types = self.driver.inbox_types(b)
                cols = (b.time, b.src, b.dst, b.msg_id, types, b.copy, b.corrupt, *b.fields)
                if self.causality is not None:
                    assert b.clock is not None
                    cols = (*cols, b.clock)
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
        c = self.counts
        return StepInfo(
            self.next_time(), out_min, self.milestones.done(),
            events=c["delivered"] + c["timers"],
        )

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

    def advance(self, end: int) -> Messages | None:
        """Process every event before ``end``; returns the raw sends of the window."""
        self._windows += 1
        if self._windows == self._gc_next and not gc.isenabled():
            self._collect()
        lt, ln, lk, ls, la = self._life
        p0 = self._life_pos
        p1 = int(np.searchsorted(lt, end, side="left"))
        self._life_pos = p1
        life = (lt[p0:p1], ln[p0:p1], lk[p0:p1], ls[p0:p1], la[p0:p1])
        mcols, payloads = self.inbox.take(end)
        tcols, tags = self.timers.take(end)
        window = order_window(end, life, mcols, payloads, tuple(tcols), tags, self._hot)
        rec = self.driver.run(window)
        new = self.driver.take_timers()
        if new is not None:
            self.timers.add(*new)
        sends = self.driver.take_sends()
        if self.causality is not None:  # stamps the log's rows and the sends with clocks
            self.causality.window(window, rec, sends, self.log)
        self._record(window, rec)
        return sends

    def _collect(self) -> None:
        """Collect reference cycles while the collector is paused
        (:func:`raysim.engine.context.paused_gc`).

        NOTE: a collection scans every object the run made, and protocols rarely make
        cycles: on ``chord_hops`` each of the 11 collections took 9-28 ms and all but the
        first found nothing. So a collection that finds nothing doubles the wait before the
        next one (up to ``GC_MAX_WINDOWS``) and one that finds garbage resets it.
        """
        found = gc.collect()
        every = GC_WINDOWS if found else min(2 * self._gc_every, GC_MAX_WINDOWS)
        self._gc_every = every
        self._gc_next = self._windows + every

    # --- the one logging, counting and milestone path ------------------------------------------

    def _record(self, w: Window, rec: Record) -> None:
        log, c = self.log, self.counts
        for t, kind, nd, arg, q in rec.life:
            log.add(t, kind, nd, q, arg)
        if len(w.msgs[0]):
            self._record_arrivals(w.msgs, rec)
        tt, tn, tid, ttags, tseq = rec.fired
        c["timers"] += len(tt)
        if log.messages and len(tt):
            log.add(tt, TIMER, tn, tseq, -1, tid, log.tag_codes(ttags))
        # Milestones are counted here, from what survived the window (an observation made in
        # on_crash is discarded with everything else the crashing node did).
        strings = log.strings
        codes: list[np.ndarray | int] = [
            strings.code(o.names) if isinstance(o.names, str) else strings.codes(o.names)
            for o in rec.obs
        ]
        for o, code in zip(rec.obs, codes, strict=True):
            c["observations"] += len(o.time)
            log.add_obs(o.time, o.node, o.seq, code, o.peer, o.ref, o.values)
        if self.milestones.names and (rec.obs or rec.life):
            self.milestones.update(rec, codes, strings.code, self.driver.alive_of)

    def _record_arrivals(self, mcols: list[np.ndarray], rec: Record) -> None:
        """Count and log the window's arrivals: handled, corrupt, or lost to a crash."""
        log, c = self.log, self.counts
        mt, ms, md, mid, mtype, _, mcor = mcols[:7]
        mcode = self.driver.log_types(mtype) if log.messages else None
        if not len(rec.crashed) and not np.count_nonzero(mcor):
            # NOTE: every arrival was handled (the common case): no masks, no gathers
            c["delivered"] += len(mt)
            if mcode is not None:
                log.add(mt, DELIVER, md, rec.msg_seq, ms, mid, mcode, -1)
            return
        gone = np.zeros(len(mt), dtype=bool)
        gone[rec.crashed] = True
        cor = mcor & ~gone
        ok = ~(gone | mcor)
        c["delivered"] += int(ok.sum())
        c["corrupt"] += int(cor.sum())
        c["dropped_crashed"] += len(rec.crashed)
        if mcode is None:
            return
        mseq = rec.msg_seq
        for mask, kind, name in (
            (ok, DELIVER, -1),
            (cor, CORRUPT, -1),
            (gone, DROP, log.strings.code("crashed")),
        ):
            if np.count_nonzero(mask):
                log.add(
                    mt[mask], kind, md[mask], mseq[mask], ms[mask], mid[mask], mcode[mask], name
                )

    # --- end of run ----------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Close the log and return this shard's counts and milestones."""
        rows = self.log.close()
        route = self.router.stats if self.router is not None else RouteStats()
        m = self.milestones
        return {
            "counts": dict(self.counts),
            "route": route,
            "rows": rows,
            "milestones": {k: (int(m.seen[k].sum()), m.last[k]) for k in m.names},
            "alive": self.driver.alive_count(),
        }
