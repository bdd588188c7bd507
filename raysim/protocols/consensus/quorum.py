"""A quorum-replicated register: N replicas, writes acknowledged by W, reads answered by R.

The Dynamo-style register (DeCandia et al., "Dynamo: Amazon's highly available key-value
store", SOSP 2007, §4.5) over Gifford's weighted voting ("Weighted voting for replicated
data", SOSP 1979): with R + W > N every read quorum meets every write quorum, so a read sees
the latest completed write; with R + W ≤ N it may miss it (a stale read). Nodes
``0 .. replicas-1`` hold the register; the last ``clients`` node ids are clients, which
coordinate their own operations.

Theory of operation
-------------------
*Versions* (``versions = "timestamp"``) are timestamps ``(time, client id)`` taken when a
write starts (the clocks are the simulator's, so perfectly synchronized): a replica keeps
the value with the highest version it has seen, so of two concurrent writes the later
timestamp silently wins (last writer wins).

*Version vectors* (``versions = "vector"``; Dynamo §4.4, Parker et al. 1983, with
:class:`raysim.values.versions.VersionVector`): a client keeps a *context*, the vector of
what it last read or wrote, and a write carries the context with the client's own entry
incremented. A replica keeps every *sibling* that no other dominates: a write dominated by
(or equal to) one it holds is old news, one that dominates some replaces them, one
concurrent with them is kept beside them. A read gathers the siblings of R replicas, keeps
those no other dominates, and, when more than one is left, emits ``siblings`` (value = how
many): two writes neither of which saw the other were detected, not ordered. The client
answers the read with one of them (the most updates summarised, then the higher value),
and its context becomes the merge of all, so its next write supersedes every sibling (the
reconciliation Dynamo leaves to the application). Read repair sends each replica the
surviving siblings it lacked. Blind writes from two clients that have not read each
other's writes are concurrent even when one finished before the other began, so vector
versions trade real-time order (stale reads, non-linearizable histories) for never losing
a concurrent write without saying so. *A write* sends ``Put`` to the replicas (every replica with
``fanout = "all"``, as Dynamo does; W random ones with ``fanout = "quorum"``) and completes
when W have acknowledged. *A read* sends ``Get`` likewise (all, or R random replicas) and
completes with the highest-versioned value among the first R answers; with
``read_repair`` it then sends that value to the answering replicas that were behind. An
operation not complete after ``timeout`` is abandoned (it stays pending in the history: a
write may still take effect). Each client has one operation at a time, a read with
probability ``read_fraction``, after a think time uniform in ``[1, 2·interval]``.

Observations (the client-history vocabulary of :mod:`raysim.protocols.consensus.checks`):
``write`` (value = the written value, a fresh operation id), ``read``, ``ok`` (value read or
written), all with ``ref`` = the operation id. The ``stale_reads`` check counts reads that
returned a value overwritten before they began; ``linearizability`` checks the whole
history (reads without a write-back phase are not linearizable even with R + W > N: two
reads concurrent with a write can see new, then old — Attiya, Bar-Noy & Dolev 1995 add the
write-back that fixes it).

Phases of an operation (:data:`TRANSITIONS`): idle → waiting → idle (done or abandoned).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, register
from raysim.protocols.consensus import checks as ck
from raysim.values.versions import VersionVector

Version = tuple[int, int]
Sibling = tuple[VersionVector, float]


class Put(NamedTuple):
    """Store ``value`` with ``version`` if newer; acknowledge (``op`` < 0: no ack wanted).

    ``version`` is a timestamp, or a :class:`VersionVector` with ``versions = "vector"``.
    """

    op: int
    version: Version | VersionVector
    value: float


class PutAck(NamedTuple):
    """A replica stored (or already had newer than) the write ``op``."""

    op: int


class Get(NamedTuple):
    """Send me your version and value."""

    op: int


class GetReply(NamedTuple):
    """A replica's version and value."""

    op: int
    version: Version
    value: float


class Siblings(NamedTuple):
    """A replica's siblings (``versions = "vector"``): the values no other one dominates."""

    op: int
    siblings: tuple[Sibling, ...]


def add_sibling(siblings: list[Sibling], vv: VersionVector, value: float) -> list[Sibling]:
    """``siblings`` after storing ``(vv, value)``: unchanged if one of them dominates ``vv``
    (equal included), else without those ``vv`` dominates and with ``vv`` appended."""
    if any(s.dominates(vv) for s, _ in siblings):
        return siblings
    return [(s, v) for s, v in siblings if not vv.dominates(s)] + [(vv, value)]


class QuorumParams(Params):
    """Parameters of the quorum register (times in ticks)."""

    clients: int = Field(2, ge=1, description="the last `clients` nodes are clients")
    w: int = Field(2, ge=1, description="write quorum")
    r: int = Field(2, ge=1, description="read quorum")
    fanout: Literal["all", "quorum"] = Field("all", description="ask all replicas, or W/R")
    read_repair: bool = False
    interval: int = Field(50, ge=1, description="mean think time between operations")
    read_fraction: float = Field(0.5, ge=0.0, le=1.0)
    timeout: int = Field(1000, ge=1, description="abandon an operation after this long")
    start: int = Field(0, ge=0, description="clients start after this time")
    versions: Literal["timestamp", "vector"] = Field(
        "timestamp", description="order writes by timestamp, or detect concurrent ones as "
        "siblings with version vectors"
    )


IDLE, WAITING = "idle", "waiting"
TRANSITIONS: dict[tuple[str, str], str] = {
    (IDLE, "invoke"): WAITING,
    (WAITING, "done"): IDLE,
    (WAITING, "abandon"): IDLE,
}


class IllegalTransition(RuntimeError):
    """A phase change that :data:`TRANSITIONS` does not allow."""


@register("consensus.quorum_register")
class QuorumRegister(Protocol):
    """A register on N replicas with write quorum W and read quorum R (Gifford 1979; Dynamo)."""

    Params: ClassVar[type[QuorumParams]] = QuorumParams
    milestones: ClassVar[tuple[str, ...]] = ()
    log_needs: ClassVar[str] = "observations"  # the checks read obs and lifecycle rows
    checks: ClassVar[tuple[str, ...]] = ("stale_reads", "linearizability")
    report: ClassVar[str | None] = "raysim.analysis.quorum:section"
    adversaries: ClassVar[dict[str, str]] = {
        "forge": "raysim.protocols.consensus.adversaries:ForgingReplica",
    }

    def __init__(self, params: QuorumParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params

    @classmethod
    def check(cls, params: QuorumParams, n_nodes: int) -> None:
        """W and R are at most the number of replicas."""
        replicas = n_nodes - params.clients
        if replicas < 1:
            raise ValueError(f"clients ({params.clients}) must leave at least one replica")
        for name, q in (("w", params.w), ("r", params.r)):
            if q > replicas:
                raise ValueError(
                    f"{name} ({q}) must be at most the {replicas} replicas "
                    "(network.nodes - clients)"
                )

    @classmethod
    def metrics(cls, params: QuorumParams, stats: dict[str, Any]) -> dict[str, float]:
        """R + W - N: positive means every read quorum meets every write quorum."""
        replicas = stats["nodes"] - params.clients
        return {"overlap": float(params.r + params.w - replicas)}

    @classmethod
    def log_metrics(cls, params: QuorumParams, events: ck.Columns, n_nodes: int
                    ) -> dict[str, float]:
        """Reads completed, and those that found concurrent writes (``siblings``)."""
        sib = ck.rows_of(events, "siblings")
        reads = set(ck.rows_of(events, "read").ref.tolist())
        done = sum(r in reads for r in ck.rows_of(events, "ok").ref.tolist())
        return {"reads": float(done), "sibling_reads": float(len(sib)),
                "sibling_read_fraction": len(sib) / done if done else 0.0}

    @classmethod
    def safety(cls, params: QuorumParams, events: ck.Columns) -> list[ck.Violation]:
        """Stale reads and linearizability of the clients' history."""
        return ck.run_checks(events, cls.checks)

    def on_start(self, ctx: Context) -> None:
        self.replicas = ctx.n_nodes - self.p.clients
        if self.node < self.replicas:
            self.version: Version = (-1, -1)
            self.value = 0.0
            self.siblings: list[Sibling] = [(VersionVector(), 0.0)]
            return
        self.context = VersionVector()
        self.phase = IDLE
        self.st = ctx.storage  # the operation counter survives a crash: ids stay unique
        self.st.setdefault("seq", 0)
        self.op = -1
        self.acks: set[int] = set()
        self.replies: list[tuple[int, Version, float]] = []
        self.gathered: list[tuple[int, tuple[Sibling, ...]]] = []
        self.timer = -1
        ctx.set_timer(self.p.start + 1 + ctx.rng.randrange(2 * self.p.interval), "op")

    def _go(self, event: str) -> None:
        try:
            self.phase = TRANSITIONS[(self.phase, event)]
        except KeyError:
            raise IllegalTransition(
                f"quorum client {self.node}: no transition from {self.phase} on {event!r}"
            ) from None

    def _targets(self, ctx: Context, q: int) -> list[int]:
        everyone = list(range(self.replicas))
        return everyone if self.p.fanout == "all" else ctx.rng.sample(everyone, q)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == "op":
            self._go("invoke")
            self.st["seq"] += 1
            self.op = (self.node << 32) | self.st["seq"]
            self.acks, self.replies, self.gathered = set(), [], []
            if ctx.rng.random() < self.p.read_fraction:
                self.reading = True
                ctx.emit("read", -1.0, ref=self.op)
                for dst in self._targets(ctx, self.p.r):
                    ctx.send(dst, Get(self.op))
            else:
                self.reading = False
                ctx.emit("write", float(self.op), ref=self.op)
                version: Version | VersionVector = (
                    self.context.increment(self.node) if self.p.versions == "vector"
                    else (ctx.now, self.node)
                )
                self.writing = version
                msg = Put(self.op, version, float(self.op))
                for dst in self._targets(ctx, self.p.w):
                    ctx.send(dst, msg)
            self.timer = ctx.set_timer(self.p.timeout, ("timeout", self.op))
        elif tag == ("timeout", self.op) and self.phase == WAITING:
            self._go("abandon")
            self._next(ctx)

    def _next(self, ctx: Context) -> None:
        self.op = -1
        ctx.set_timer(1 + ctx.rng.randrange(2 * self.p.interval), "op")

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind = type(msg)
        if self.node < self.replicas:
            vector = self.p.versions == "vector"
            if kind is Put:
                if vector:
                    self.siblings = add_sibling(self.siblings, msg.version, msg.value)
                elif msg.version > self.version:
                    self.version, self.value = msg.version, msg.value
                if msg.op >= 0:
                    ctx.send(src, PutAck(msg.op))
            elif kind is Get:
                ctx.send(src, Siblings(msg.op, tuple(self.siblings)) if vector
                         else GetReply(msg.op, self.version, self.value))
            return
        if self.phase != WAITING or msg.op != self.op:
            return  # a late answer to an operation already done or abandoned
        if kind is PutAck:
            self.acks.add(src)
            if len(self.acks) >= self.p.w:
                if self.p.versions == "vector":
                    self.context = self.writing  # type: ignore[assignment]
                self._done(ctx, float(self.op))
        elif kind is Siblings:
            self.gathered.append((src, msg.siblings))
            if len(self.gathered) >= self.p.r:
                self._read_siblings(ctx)
        elif kind is GetReply:
            self.replies.append((src, msg.version, msg.value))
            if len(self.replies) >= self.p.r:
                _, version, value = max(self.replies, key=lambda x: (x[1], x[0]))
                if self.p.read_repair:
                    for replica, v, _ in self.replies:
                        if v < version:
                            ctx.send(replica, Put(-1, version, value))
                self._done(ctx, value)

    def _read_siblings(self, ctx: Context) -> None:
        """Complete a read from R replicas' siblings (``versions = "vector"``)."""
        found: list[Sibling] = []
        for _, sibs in self.gathered:
            for vv, value in sibs:
                found = add_sibling(found, vv, value)
        if len(found) > 1:
            ctx.emit("siblings", len(found), ref=self.op)
        ctx_vv = VersionVector()
        for vv, _ in found:
            ctx_vv = ctx_vv.merge(vv)
        self.context = ctx_vv
        if self.p.read_repair:
            for replica, sibs in self.gathered:
                for vv, value in found:
                    if not any(s.dominates(vv) for s, _ in sibs):
                        ctx.send(replica, Put(-1, vv, value))
        _, value = max(found, key=lambda sv: (sv[0].total(), sv[1]))
        self._done(ctx, value)

    def _done(self, ctx: Context, value: float) -> None:
        self._go("done")
        ctx.emit("ok", value, ref=self.op)
        ctx.cancel_timer(self.timer)
        self._next(ctx)
