"""Crash-recovery of a replicated append-only log: flush policy, hello, fetch, restore.

Implements Algorithm 4 of the course notes ("Crash-Recovery Log Rebuild": load the log from
disk, send hello to the peers, fetch the entries after the local tail, append, restore),
with durability as in write-ahead logging (C. Mohan et al., "ARIES", ACM TODS 1992: what was
not forced to disk before a crash is gone) and the fetch retried on timeout as in
:mod:`raysim.protocols.replication.retry_ack`.

Theory of operation
-------------------
Node 0 (the writer) appends entry i (i = 1, 2, …; value ``epoch·10⁶ + i``, where epoch counts
the writer's recoveries) every ``interval`` ticks and sends ``Append(i, value)`` to every
other node. A replica appends an entry that extends its log; a later one shows a gap (loss,
or a downtime) and the replica fetches the missing entries from the writer.

Durability: ``ctx.storage`` (which survives a crash) plays the disk. With ``flush = 1`` every
append is written to it before anything else happens (synced); with ``flush = F`` appended
entries stay in volatile memory and are written F at a time, so a crash loses the unflushed
tail (up to F-1 entries). On recovery a node:

==========  ===========================================================  ==========
phase       what happens                                                 next phase
==========  ===========================================================  ==========
active      crash                                                        down
down        recover: load the log from storage, ``Hello(tail)`` to all   hello
hello       first ``Tail(n)`` answer with n > tail, or ``hello_wait``    fetching
            ticks: ``Fetch(tail + 1)`` from the peer with the longest log
fetching    ``Entries`` extends the log to the target: append, restore   active
fetching    no answer within ``rto``: fetch again from the next peer     fetching
hello       every peer's log is no longer than ours                      active
==========  ===========================================================  ==========

Appends that arrive while a node recovers are kept and applied once its log reaches them.
The writer, too, rebuilds before it appends again (else it would reuse indexes that live
replicas hold with other values).

Observations: ``append`` (value = entry value, ref = index) for every entry added to a
node's log, ``loaded`` (value = entries found in storage) on recovery, ``recovered`` (value =
ticks from recovery to restore, ref = entries fetched; ``caught_up`` likewise after a gap).
A node's log at any time is replayed
from these rows (``loaded`` truncates it), which the ``prefix_agreement`` check and the
``entries_lost`` metric do.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, Violation, register
from raysim.protocols.replication.checks import Events, obs, rows_of_kind, violation


class Append(NamedTuple):
    """The writer's entry number ``at`` with its ``value``."""

    at: int
    value: int


class Hello(NamedTuple):
    """A recovering node's tail."""

    tail: int


class Tail(NamedTuple):
    """The answer to a hello: the peer's tail."""

    tail: int


class Fetch(NamedTuple):
    """Send me your entries from ``start`` on."""

    start: int


class Entries(NamedTuple):
    """Entries ``start``, ``start + 1``, … (values)."""

    start: int
    values: tuple[int, ...]


class LogParams(Params):
    """Parameters of the log rebuild (times in ticks)."""

    interval: int = Field(100, ge=1, description="ticks between two appends of the writer")
    flush: int = Field(1, ge=1, description="entries per flush to storage; 1 = synced")
    hello_wait: int = Field(300, ge=1, description="ticks to wait for tails before fetching")
    rto: int = Field(400, ge=1, description="fetch retry timeout")
    appends: int = Field(10**9, ge=1, description="the writer stops after this many")


ACTIVE, HELLO, FETCHING = "active", "hello", "fetching"
TRANSITIONS: dict[tuple[str, str], str] = {
    (HELLO, "tail"): FETCHING,
    (HELLO, "wait"): FETCHING,
    (HELLO, "nothing_to_fetch"): ACTIVE,
    (FETCHING, "entries"): ACTIVE,
    (FETCHING, "timeout"): FETCHING,
    (ACTIVE, "gap"): FETCHING,
}
APPEND, WAIT, RETRY = "append", "hello_wait", "fetch_retry"


def step(phase: str, event: str) -> str:
    """The next phase, or ValueError naming an illegal transition."""
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise ValueError(f"log replica: illegal event {event!r} in phase {phase}") from None


@register("replication.log_rebuild")
class LogRebuild(Protocol):
    """Crash-recovery log rebuild (Algorithm 4): flush policy, hello, fetch with retry."""

    message_types: ClassVar[tuple[str, ...]] = ("Append", "Hello", "Tail", "Fetch", "Entries")

    log_needs: ClassVar[str] = "observations"  # its checks and log metrics read obs rows

    Params: ClassVar[type[LogParams]] = LogParams
    checks: ClassVar[tuple[str, ...]] = ("prefix_agreement",)
    report: ClassVar[str | None] = "raysim.analysis.replication:log_rebuild_parts"

    def __init__(self, params: LogParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.volatile: list[int] = []  # appended, not yet flushed
        self.phase = ACTIVE
        self.pending: dict[int, int] = {}  # appends beyond the tail, kept for later
        self.tails: dict[int, int] = {}
        self.fetched = 0
        self.since = 0
        self.retry = -1
        self.asked: list[int] = []
        self.after_crash = False

    # --- configuration and results ------------------------------------------------------

    @classmethod
    def check(cls, params: LogParams, n_nodes: int) -> None:
        """Nothing depends on the network size beyond having a replica besides the writer."""
        if n_nodes < 2:
            raise ValueError("a replicated log needs at least 2 nodes")

    @classmethod
    def metrics(cls, params: LogParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node."""
        return {"messages_per_node": stats["sent"] / stats["nodes"]}

    @classmethod
    def log_metrics(cls, params: LogParams, events: Events, n_nodes: int) -> dict[str, float]:
        """Recoveries, their time and fetched entries, entries lost, prefix agreement."""
        return rebuild_metrics(events)

    @classmethod
    def safety(cls, params: LogParams, events: Events) -> list[Violation]:
        """Every two live replicas agree on every index both hold."""
        return prefix_disagreements(events)

    # --- the log ------------------------------------------------------------------------

    @property
    def tail(self) -> int:
        return len(self.stored) + len(self.volatile)

    def _entry(self, i: int) -> int:
        n = len(self.stored)
        return self.stored[i - 1] if i <= n else self.volatile[i - 1 - n]

    def _append(self, ctx: Context, value: int) -> None:
        self.volatile.append(value)
        ctx.emit("append", value, ref=self.tail)
        if len(self.volatile) >= self.p.flush:  # flush: write the volatile tail to storage
            self.stored.extend(self.volatile)
            self.volatile.clear()

    def _drain(self, ctx: Context) -> None:
        while self.tail + 1 in self.pending:
            self._append(ctx, self.pending.pop(self.tail + 1))
        for i in [i for i in self.pending if i <= self.tail]:
            del self.pending[i]

    # --- handlers -----------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        self.stored: list[int] = ctx.storage.setdefault("log", [])
        ctx.storage.setdefault("epoch", 0)
        if self.node == 0:
            ctx.set_timer(self.p.interval, APPEND)

    def on_recover(self, ctx: Context) -> None:
        self.stored = ctx.storage.setdefault("log", [])
        ctx.emit("loaded", len(self.stored))
        self.phase, self.since, self.fetched, self.after_crash = HELLO, ctx.now, 0, True
        if self.node == 0:
            ctx.storage["epoch"] = ctx.storage.get("epoch", 0) + 1
            ctx.set_timer(self.p.interval, APPEND)
        for peer in ctx.peers:
            ctx.send(peer, Hello(self.tail))
        ctx.set_timer(self.p.hello_wait, WAIT)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == APPEND:
            ctx.set_timer(self.p.interval, APPEND)
            if self.phase == ACTIVE and self.tail < self.p.appends:
                value = ctx.storage["epoch"] * 10**6 + self.tail + 1
                self._append(ctx, value)
                for peer in ctx.peers:
                    ctx.send(peer, Append(self.tail, value))
        elif tag == WAIT and self.phase == HELLO:
            self._fetch(ctx, "wait")
        elif tag == RETRY and self.phase == FETCHING:
            self._fetch(ctx, "timeout")

    def _fetch(self, ctx: Context, event: str) -> None:
        """Fetch from the peer with the longest known log not yet asked (else the writer)."""
        better = sorted((-t, p) for p, t in self.tails.items()
                        if t > self.tail and p not in self.asked)
        if not better and event == "wait":
            self.phase = step(self.phase, "nothing_to_fetch")
            self._restored(ctx)
            return
        self.phase = step(self.phase, event)
        if better:
            peer = better[0][1]
        else:  # everyone asked: start over, from the writer first
            self.asked = []
            peer = 0 if self.node != 0 else ctx.random_peer()
        self.asked.append(peer)
        ctx.send(peer, Fetch(self.tail + 1))
        self.retry = ctx.set_timer(self.p.rto, RETRY)

    def _restored(self, ctx: Context) -> None:
        self._drain(ctx)
        name = "recovered" if self.after_crash else "caught_up"
        ctx.emit(name, ctx.now - self.since, ref=self.fetched)
        self.asked, self.after_crash = [], False

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind = type(msg)
        if kind is Append:
            if msg.at == self.tail + 1 and self.phase == ACTIVE:
                self._append(ctx, msg.value)
                self._drain(ctx)
            elif msg.at > self.tail:
                self.pending[msg.at] = msg.value
                if self.phase == ACTIVE:  # a gap: fetch what is missing from the writer
                    self.phase = step(self.phase, "gap")
                    self.since, self.fetched, self.asked = ctx.now, 0, [src]
                    ctx.send(src, Fetch(self.tail + 1))
                    self.retry = ctx.set_timer(self.p.rto, RETRY)
        elif kind is Hello:
            ctx.send(src, Tail(self.tail))
        elif kind is Tail:
            self.tails[src] = msg.tail
            if self.phase == HELLO and msg.tail > self.tail:
                self._fetch(ctx, "tail")
        elif kind is Fetch:
            if msg.start <= self.tail:
                values = tuple(self._entry(i) for i in range(msg.start, self.tail + 1))
                ctx.send(src, Entries(msg.start, values))
        elif kind is Entries and self.phase == FETCHING and msg.start <= self.tail + 1:
            for i, v in enumerate(msg.values, start=msg.start):
                if i == self.tail + 1:
                    self._append(ctx, v)
                    self.fetched += 1
            ctx.cancel_timer(self.retry)
            self.phase = step(self.phase, "entries")
            self._restored(ctx)


# --- checks and metrics over the log -----------------------------------------------------


def replay(events: Events) -> dict[int, dict[int, int]]:
    """Each node's log at the end of the run (index -> value), replayed from its rows."""
    logs: dict[int, dict[int, int]] = {}
    a, lo = obs(events, "append"), obs(events, "loaded")
    rows = sorted([(t, 0, i, n, int(r), int(v)) for i, (t, n, r, v) in enumerate(zip(
        a.time.tolist(), a.node.tolist(), a.ref.tolist(), a.value.tolist(), strict=True))]
        + [(t, 0, len(a.time) + i, n, -1, int(v)) for i, (t, n, v) in enumerate(zip(
            lo.time.tolist(), lo.node.tolist(), lo.value.tolist(), strict=True))])
    for _, _, _, n, idx, v in rows:
        log = logs.setdefault(n, {})
        if idx == -1:  # loaded: only what was flushed survives
            for i in [i for i in log if i > v]:
                del log[i]
        else:
            log[idx] = v
    return logs


def _down_at_end(events: Events) -> set[int]:
    last: dict[int, tuple[int, int]] = {}
    for kind, code in (("crash", 1), ("recover", 0)):
        t, n = rows_of_kind(events, kind)
        for ti, ni in zip(t.tolist(), n.tolist(), strict=True):
            last[ni] = max(last.get(ni, (-1, 0)), (ti, code))
    return {n for n, (_, c) in last.items() if c == 1}


def prefix_disagreements(events: Events) -> list[Violation]:
    """Live replicas whose log differs from the longest live log at an index both hold."""
    logs = replay(events)
    down = _down_at_end(events)
    live = sorted(n for n in logs if n not in down)
    if not live:
        return []
    ref = max(live, key=lambda n: (len(logs[n]), -n))
    out = []
    for n in live:
        bad = [i for i, v in sorted(logs[n].items()) if logs[ref].get(i, v) != v]
        if bad:
            out.append(violation("prefix_agreement", 0, n,
                                 f"entry {bad[0]} differs from node {ref}'s", ref))
    return out


def rebuild_metrics(events: Events) -> dict[str, float]:
    """``recoveries``, ``recovery_time`` (mean ticks), ``entries_fetched`` (mean per
    recovery), ``entries_lost`` (total unflushed entries a crash destroyed), ``downtime``
    (mean ticks), ``prefix_agreement`` (1 if no disagreement) and ``log_length``."""
    a, lo, rec = obs(events, "append"), obs(events, "loaded"), obs(events, "recovered")
    ct, cn = rows_of_kind(events, "crash")
    rt, rn = rows_of_kind(events, "recover")
    lost = 0
    for t, n, v in zip(lo.time.tolist(), lo.node.tolist(), lo.value.tolist(), strict=True):
        before = a.time < t
        mine = before & (a.node == n)
        # the node's tail just before the crash: the last index it appended before recovering
        tail = int(a.ref[mine][-1]) if mine.any() else 0
        lost += max(0, tail - int(v))
    downs = []
    for t, n in zip(rt.tolist(), rn.tolist(), strict=True):
        c = ct[(cn == n) & (ct <= t)]
        if len(c):
            downs.append(t - int(c.max()))
    logs = replay(events)
    return {
        "recoveries": float(len(lo.time)),
        "recovery_time": float(rec.value.mean()) if len(rec.value) else float("nan"),
        "entries_fetched": float(rec.ref.mean()) if len(rec.ref) else 0.0,
        "entries_lost": float(lost),
        "downtime": float(np.mean(downs)) if downs else 0.0,
        "prefix_agreement": float(not prefix_disagreements(events)),
        "log_length": float(max((len(v) for v in logs.values()), default=0)),
    }
