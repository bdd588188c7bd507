"""Periodic anti-entropy over state-based CRDTs: full-state push, pull, push-pull, or digests.

Implements Algorithm 2 of the course notes (wait a random interval, pick a random replica,
exchange states, merge), the anti-entropy of A. Demers et al., "Epidemic algorithms for
replicated database maintenance" (PODC 1987, §1.3), over the convergent replicated data types
of M. Shapiro, N. Preguiça, C. Baquero and M. Zawirski, "Conflict-free replicated data
types" (SSS 2011) from :mod:`raysim.values.crdt`, and, for the digest exchange, the version
vectors of D. S. Parker et al., "Detection of mutual inconsistency in distributed systems"
(IEEE TSE 1983) with the delta states of Almeida, Shoker and Baquero (JPDC 2018).

Theory of operation
-------------------
Every node is a replica of one object of type ``crdt``. Clients write at random replicas:
each replica receives writes as a Poisson process of rate ``write_rate / N`` per second
(``write_rate`` writes per second in all), from ``write_start`` until ``write_until`` ticks;
a write updates the local state (:func:`raysim.protocols.replication.workload.write`).
Every replica also keeps a version vector of the writes its state includes (``vv[o]`` = how
many of replica o's writes). Every ``period`` ticks on average (uniform in [½, 1½] ×
``period``) a replica picks a random peer and runs one exchange:

==========  ===============================================================  ===============
mode        messages                                                         ships
==========  ===============================================================  ===============
push        ``State`` →                                                      full state
pull        ``Pull`` →, ← ``State``                                          full state
push_pull   ``State`` →, ← ``State`` (the peer's state after its merge)      full state, 2×
digest      ``Digest(vv)`` →, ← ``Deltas(missing, vv)``, ``Deltas(missing)`` →  only the
                                                                             writes the
                                                                             other lacks
==========  ===============================================================  ===============

A receiver joins what it gets into its state. With a correct CRDT (commutative, associative,
idempotent merge) any two replicas that have received the same writes hold equal states
(strong eventual consistency), whatever the order, loss or duplication; anti-entropy makes
every write reach every replica with probability 1 once partitions heal. In ``digest`` mode a
replica keeps each write's delta state and ships only those with a sequence number above the
peer's version vector (per origin, in order), so an exchange between replicas in sync costs
two version vectors.

``crdt = "arrival_register"`` is the negative example: a register whose merge keeps the
value of the last state to arrive with anything new. Its version vectors converge (nothing
is left to exchange) while the values differ: the check ``diverged_after_quiescence``
reports it.

Observations: ``write`` (value = the write's argument, ref = the writer's count), ``known``
(value = writes included, emitted when it grows), ``state`` (value = a 53-bit hash of the
CRDT's value, emitted at start and whenever the value changes), ``bytes`` (value = payload
bytes of each message sent, from :func:`~raysim.protocols.replication.workload.size_of`;
ref = 1 on the message that opens an exchange).
A replica's state at any time is its last ``state`` row, so the analysis can compare every
replica with the join of all writes so far.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, Violation, register
from raysim.protocols.replication import workload as wl
from raysim.protocols.replication.checks import Events, obs, rows_of_kind, violation
from raysim.values.versions import VersionVector


class State(NamedTuple):
    """A replica's full state (and, for instrumentation, its version vector)."""

    state: Any
    vv: VersionVector
    reply: bool  # push-pull: the receiver answers with its own state


class Pull(NamedTuple):
    """Pull: asks the peer for its full state."""


class Digest(NamedTuple):
    """Digest exchange: the initiator's version vector."""

    vv: VersionVector


class Deltas(NamedTuple):
    """The writes (origin, seq, delta state) the receiver lacks; ``vv`` asks for the rest."""

    deltas: tuple[tuple[int, int, Any], ...]
    vv: VersionVector | None


class AntiEntropyParams(Params):
    """Parameters of anti-entropy (times in ticks)."""

    crdt: Literal["g_counter", "pn_counter", "g_set", "or_set", "lww_register",
                  "mv_register", "arrival_register"] = "or_set"
    mode: Literal["push", "pull", "push_pull", "digest"] = "push_pull"
    period: int = Field(1000, ge=2, description="mean ticks between a replica's exchanges")
    write_rate: float = Field(20.0, ge=0.0, description="client writes per second, all replicas")
    write_start: int = Field(0, ge=0)
    write_until: int = Field(20_000, ge=0, description="no writes from this tick on")


EXCHANGE, WRITE = "exchange", "write"


@register("replication.anti_entropy")
class AntiEntropy(Protocol):
    """Periodic anti-entropy (Algorithm 2) over a state-based CRDT: full state or digests."""

    message_types: ClassVar[tuple[str, ...]] = ("State", "Pull", "Digest", "Deltas")

    log_needs: ClassVar[str] = "observations"  # its checks and log metrics read obs rows

    Params: ClassVar[type[AntiEntropyParams]] = AntiEntropyParams
    checks: ClassVar[tuple[str, ...]] = ("diverged_after_quiescence", "wrong_value")
    report: ClassVar[str | None] = "raysim.analysis.byzantine:anti_entropy"  # + equivocators
    adversaries: ClassVar[dict[str, str]] = {
        "equivocate": "raysim.protocols.replication.adversaries:Equivocator"}

    def __init__(self, params: AntiEntropyParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.state: Any = wl.empty(params.crdt)
        self.vv = VersionVector()
        self.deltas: dict[int, list[Any]] = {}  # origin -> delta of its write 1, 2, …
        self.writes = 0
        self.hash = -1

    # --- configuration and results ------------------------------------------------------

    @classmethod
    def check(cls, params: AntiEntropyParams, n_nodes: int) -> None:
        """Writes must stop after they start."""
        if params.write_until < params.write_start:
            raise ValueError("write_until must not be before write_start")

    @classmethod
    def metrics(cls, params: AntiEntropyParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per replica per second of virtual time."""
        return {"messages_per_node_s": stats["sent"] / stats["nodes"]
                / max(stats["end_time"], 1) * 1000}

    @classmethod
    def log_metrics(cls, params: AntiEntropyParams, events: Events, n_nodes: int
                    ) -> dict[str, float]:
        """Convergence, the value against the specification, and bytes per exchange."""
        return convergence_metrics(params, events, n_nodes)

    @classmethod
    def safety(cls, params: AntiEntropyParams, events: Events) -> list[Violation]:
        """Replicas that know every write must hold one value, the specified one."""
        return quiescence_checks(params, events)

    # --- handlers -----------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        self._observe(ctx)
        ctx.emit("known", 0)
        self._next_exchange(ctx)
        if self.p.write_rate > 0:
            self._next_write(ctx, max(self.p.write_start - ctx.now, 0))

    def _next_exchange(self, ctx: Context) -> None:
        half = self.p.period // 2
        ctx.set_timer(half + ctx.rng.randrange(2 * half + 1), EXCHANGE)

    def _next_write(self, ctx: Context, base: int = 0) -> None:
        mean = 1000.0 * ctx.n_nodes / self.p.write_rate
        gap = max(1, round(-mean * math.log1p(-ctx.rng.random())))
        if ctx.now + base + gap < self.p.write_until:
            ctx.set_timer(base + gap, WRITE)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == WRITE:
            self._write(ctx)
            self._next_write(ctx)
            return
        self._next_exchange(ctx)
        peer = ctx.random_peer()
        mode = self.p.mode
        if mode == "pull":
            self._send(ctx, peer, Pull(), 0, first=True)
        elif mode == "digest":
            self._send(ctx, peer, Digest(self.vv), wl.size_of(self.vv), first=True)
        else:
            self._send_state(ctx, peer, reply=mode == "push_pull", first=True)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind = type(msg)
        if kind is State:
            self._merge(ctx, msg.state, msg.vv)
            if msg.reply:
                self._send_state(ctx, src, reply=False)
        elif kind is Pull:
            self._send_state(ctx, src, reply=False)
        elif kind is Digest:
            self._send(ctx, src, *self._missing(msg.vv, ask=True))
        elif kind is Deltas:
            self._apply(ctx, msg.deltas)
            if msg.vv is not None:
                missing, size = self._missing(msg.vv, ask=False)
                if missing.deltas:
                    self._send(ctx, src, missing, size)

    # --- state --------------------------------------------------------------------------

    def _send(self, ctx: Context, dst: int, msg: object, size: int, first: bool = False
              ) -> None:
        ctx.send(dst, msg)
        ctx.emit("bytes", size, peer=dst, ref=int(first))

    def _send_state(self, ctx: Context, dst: int, reply: bool, first: bool = False) -> None:
        self._send(ctx, dst, State(self.state, self.vv, reply), wl.size_of(self.state), first)

    def _observe(self, ctx: Context) -> None:
        h = wl.value_hash(self.state.value)
        if h != self.hash:
            self.hash = h
            ctx.emit("state", h)

    def _write(self, ctx: Context) -> None:
        self.writes += 1
        self.state, delta, arg = wl.write(self.p.crdt, self.state, self.node, ctx.now,
                                          self.writes, ctx.rng)
        self.vv = self.vv.increment(self.node)
        self.deltas.setdefault(self.node, []).append(delta)
        ctx.emit("write", arg, ref=self.writes)
        ctx.emit("known", self.vv.total())
        self._observe(ctx)

    def _merge(self, ctx: Context, state: Any, vv: VersionVector) -> None:
        before = self.vv.total()
        self.state = self.state.merge(state)
        self.vv = self.vv.merge(vv)
        if self.vv.total() != before:
            ctx.emit("known", self.vv.total())
        self._observe(ctx)

    def _missing(self, vv: VersionVector, ask: bool) -> tuple[Deltas, int]:
        """The deltas a replica with version vector ``vv`` lacks, in (origin, seq) order."""
        out = []
        for origin in sorted(self.deltas):
            log = self.deltas[origin]
            out += [(origin, s + 1, log[s]) for s in range(vv[origin], len(log))]
        size = sum(8 + wl.size_of(d) for _, _, d in out)
        mine = self.vv if ask else None
        return Deltas(tuple(out), mine), size + (wl.size_of(self.vv) if ask else 0)

    def _apply(self, ctx: Context, deltas: tuple[tuple[int, int, Any], ...]) -> None:
        before = self.vv.total()
        for origin, seq, delta in deltas:
            log = self.deltas.setdefault(origin, [])
            if seq == len(log) + 1:  # in order per origin; anything else is already here
                log.append(delta)
                self.state = self.state.merge(delta)
                self.vv = self.vv.merge(VersionVector({origin: seq}))
        if self.vv.total() != before:
            ctx.emit("known", self.vv.total())
        self._observe(ctx)


# --- checks and metrics over the log -----------------------------------------------------


def _final(events: Events, name: str) -> dict[int, tuple[int, float]]:
    """Each node's last ``name`` observation: node -> (time, value)."""
    o = obs(events, name)
    out: dict[int, tuple[int, float]] = {}
    for t, n, v in zip(o.time.tolist(), o.node.tolist(), o.value.tolist(), strict=True):
        out[n] = (t, v)
    return out


def _live(events: Events, nodes: list[int]) -> list[int]:
    """The nodes whose last lifecycle row is not a crash."""
    ct, cn = rows_of_kind(events, "crash")
    rt, rn = rows_of_kind(events, "recover")
    last: dict[int, tuple[int, str]] = {}
    for t, n in zip(ct.tolist(), cn.tolist(), strict=True):
        last[n] = max(last.get(n, (-1, "")), (t, "crash"))
    for t, n in zip(rt.tolist(), rn.tolist(), strict=True):
        last[n] = max(last.get(n, (-1, "")), (t, "recover"))
    down = {n for n, (_, k) in last.items() if k == "crash"}
    return [n for n in nodes if n not in down]


def _honest(events: Events, nodes: list[int]) -> list[int]:
    """The nodes that did not declare themselves Byzantine (a ``byzantine`` row)."""
    byz = set(obs(events, "byzantine").node.tolist())
    return [n for n in nodes if n not in byz]


def spec_hash(params: AntiEntropyParams, events: Events) -> int | None:
    """The hash of the value the writes' sequential specification gives (None if unfixed)."""
    if params.crdt not in wl.SPECIFIED:
        return None
    w = obs(events, "write")
    value = wl.specified_value(params.crdt, [int(v) for v in w.value.tolist()],
                               w.time.tolist(), w.node.tolist())
    return wl.value_hash(value)


def quiescence_checks(params: AntiEntropyParams, events: Events) -> list[Violation]:
    """``diverged_after_quiescence``: a replica that knows every write but holds another
    value than the first such replica; ``wrong_value``: such a replica's value is not the
    specified one (types in :data:`~raysim.protocols.replication.workload.SPECIFIED`)."""
    total = len(obs(events, "write").time)
    known, state = _final(events, "known"), _final(events, "state")
    full = [n for n in _honest(events, _live(events, sorted(state)))
            if known.get(n, (0, 0.0))[1] == total]
    out: list[Violation] = []
    if not full:
        return out
    ref_node = full[0]
    ref = state[ref_node][1]
    want = spec_hash(params, events)
    for n in full:
        t, h = state[n]
        if h != ref:
            out.append(violation("diverged_after_quiescence", t, n,
                                 f"knows all {total} writes, value differs from node {ref_node}",
                                 ref_node))
        if want is not None and int(h) != want:
            out.append(violation("wrong_value", t, n,
                                 "converged value is not the specified one"))
    return out


def convergence_metrics(params: AntiEntropyParams, events: Events, n_nodes: int
                        ) -> dict[str, float]:
    """``converged`` (1 if every live replica knows every write and all hold one value),
    ``matches_spec``, ``convergence_time`` (ticks after the last write until the last
    replica reached the final value), ``distinct_final``, ``bytes_per_exchange`` and
    ``writes``."""
    w = obs(events, "write")
    total = len(w.time)
    known, state = _final(events, "known"), _final(events, "state")
    live = _honest(events, _live(events, sorted(state)))
    hashes = {state[n][1] for n in live}
    all_known = all(known.get(n, (0, 0.0))[1] == total for n in live)
    converged = bool(live) and all_known and len(hashes) == 1
    want = spec_hash(params, events)
    last_write = int(w.time.max()) if total else 0
    conv_t = float(max(max(known[n][0], state[n][0]) for n in live) - last_write) \
        if converged else float("nan")
    bo = obs(events, "bytes")
    b, exchanges = bo.value, int((bo.ref == 1).sum())
    return {
        "converged": float(converged),
        "matches_spec": float(converged and (want is None or int(next(iter(hashes))) == want)),
        "convergence_time": max(conv_t, 0.0) if converged else float("nan"),
        "distinct_final": float(len(hashes)),
        "bytes_per_exchange": float(b.sum()) / exchanges if exchanges else 0.0,
        "bytes_total": float(b.sum()),
        "writes": float(total),
        "exchanges": float(exchanges),
    }
