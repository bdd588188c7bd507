"""A quorum-replicated register: N replicas, writes acknowledged by W, reads answered by R.

The Dynamo-style register (DeCandia et al., "Dynamo: Amazon's highly available key-value
store", SOSP 2007, §4.5) over Gifford's weighted voting ("Weighted voting for replicated
data", SOSP 1979): with R + W > N every read quorum meets every write quorum, so a read sees
the latest completed write; with R + W ≤ N it may miss it (a stale read). Nodes
``0 .. replicas-1`` hold the register; the last ``clients`` node ids are clients, which
coordinate their own operations.

Theory of operation
-------------------
*Versions* are timestamps ``(time, client id)`` taken when a write starts (the clocks are
the simulator's, so perfectly synchronized): a replica keeps the value with the highest
version it has seen. *A write* sends ``Put`` to the replicas (every replica with
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

Version = tuple[int, int]


class Put(NamedTuple):
    """Store ``value`` with ``version`` if newer; acknowledge (``op`` < 0: no ack wanted)."""

    op: int
    version: Version
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
    def safety(cls, params: QuorumParams, events: ck.Columns) -> list[ck.Violation]:
        """Stale reads and linearizability of the clients' history."""
        return ck.run_checks(events, cls.checks)

    def on_start(self, ctx: Context) -> None:
        self.replicas = ctx.n_nodes - self.p.clients
        if self.node < self.replicas:
            self.version: Version = (-1, -1)
            self.value = 0.0
            return
        self.phase = IDLE
        self.st = ctx.storage  # the operation counter survives a crash: ids stay unique
        self.st.setdefault("seq", 0)
        self.op = -1
        self.acks: set[int] = set()
        self.replies: list[tuple[int, Version, float]] = []
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
            self.acks, self.replies = set(), []
            if ctx.rng.random() < self.p.read_fraction:
                self.reading = True
                ctx.emit("read", -1.0, ref=self.op)
                for dst in self._targets(ctx, self.p.r):
                    ctx.send(dst, Get(self.op))
            else:
                self.reading = False
                ctx.emit("write", float(self.op), ref=self.op)
                msg = Put(self.op, (ctx.now, self.node), float(self.op))
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
            if kind is Put:
                if msg.version > self.version:
                    self.version, self.value = msg.version, msg.value
                if msg.op >= 0:
                    ctx.send(src, PutAck(msg.op))
            elif kind is Get:
                ctx.send(src, GetReply(msg.op, self.version, self.value))
            return
        if self.phase != WAITING or msg.op != self.op:
            return  # a late answer to an operation already done or abandoned
        if kind is PutAck:
            self.acks.add(src)
            if len(self.acks) >= self.p.w:
                self._done(ctx, float(self.op))
        elif kind is GetReply:
            self.replies.append((src, msg.version, msg.value))
            if len(self.replies) >= self.p.r:
                _, version, value = max(self.replies, key=lambda x: (x[1], x[0]))
                if self.p.read_repair:
                    for replica, v, _ in self.replies:
                        if v < version:
                            ctx.send(replica, Put(-1, version, value))
                self._done(ctx, value)

    def _done(self, ctx: Context, value: float) -> None:
        self._go("done")
        ctx.emit("ok", value, ref=self.op)
        ctx.cancel_timer(self.timer)
        self._next(ctx)
