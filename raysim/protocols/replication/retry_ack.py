"""Reliable streams over a lossy network: numbered messages, acknowledgements, retransmission.

Implements Algorithm 1 of the course notes ("Retry-with-Ack": send, wait for the ack, resend
on timeout) as a sliding-window ARQ, with the retransmission timer of V. Paxson, M. Allman,
J. Chu and M. Sargent, "Computing TCP's Retransmission Timer", RFC 6298 (2011), after
V. Jacobson, "Congestion avoidance and control" (SIGCOMM 1988) and P. Karn and C. Partridge,
"Improving round-trip time estimates in reliable transport protocols" (SIGCOMM 1987).

Theory of operation
-------------------
Nodes ``0 .. senders-1`` are senders, every other node a receiver. Each sender produces
``messages`` messages, one every ``interval`` ticks, and streams each to every receiver over
its own channel (a multicast made of independent unicast streams). A channel keeps at most
``window`` messages in flight; each transmission of message ``seq`` sets a retransmission
timer, and when it fires before the ack the message is sent again. The timeout is:

===========  =====================================================================
``timeout``  the timer of the k-th transmission of a message (k = 1, 2, …)
===========  =====================================================================
fixed        ``rto``
backoff      ``min(cap, rto · 2^(k-1))`` (binary exponential backoff with a cap)
adaptive     RFC 6298: ``SRTT + max(1, 4·RTTVAR)`` from measured round trips (gains
             1/8 and 1/4), clamped to ``[min_rto, cap]``, ``rto`` before the first
             sample; doubled on every expiry (§5.5); Karn's rule: only messages sent
             once give samples
===========  =====================================================================

With ``jitter = j > 0`` each timeout is multiplied by a uniform draw in ``[1-j, 1+j]`` (from
the node's stream), which desynchronises retransmissions. After ``max_retries``
retransmissions (0 = never) the sender gives up on a message (observation ``give_up``).

A receiver keeps, per sender, the set of sequence numbers it has received; a copy of a
known number is a duplicate (observation ``duplicate``), acknowledged again and otherwise
discarded, so every message is applied at most once (idempotent apply). With
``in_order = true`` a message is applied only when every lower number has been (a hold-back
buffer restores the order that the network's delay variance broke); otherwise on first
arrival. ``ack = "each"`` acknowledges the message that arrived; ``ack = "cumulative"``
acknowledges every number below the first gap (and names the arrival, for RTT samples),
so one ack may retire several messages and a lost ack is repaired by the next one.
Corrupted copies never reach the protocol: the engine's checksum drops them, so for the
protocol corruption is loss.

Per message the sender's phases are:

===========  ============  ===========
phase        event         next phase
===========  ============  ===========
queued       release       in_flight
in_flight    timeout       in_flight (retransmitted)
in_flight    ack           acked
in_flight    give up       gave_up
===========  ============  ===========

Observations: at the receiver ``apply`` (value = seq, peer = sender) and ``latency`` (value
= ticks since the message's first transmission, peer = sender, ref = seq) when a message is
applied, ``duplicate`` (value = seq) for a discarded copy; at the sender ``acked`` (value =
transmissions it took, peer = receiver, ref = seq), ``give_up`` (same fields); ``done`` at a
sender when every channel is finished, at a receiver when it has applied every message of
every sender (so ``stop_when = "done"`` ends the run).

Expected cost. With independent loss p on data and on acks and a timeout longer than every
round trip, a transmission is answered with probability (1-p)², so with per-message acks
the transmissions of a message are geometric with mean 1/(1-p)² (4 at p = 0.5); with loss
p_d on data and p_a on acks, 1/((1-p_d)(1-p_a)). Cumulative acks cost less when acks are
lost (a later ack covers an earlier one: no fewer than 1/(1-p_d)) but more after a data
loss, since the messages behind a gap are not acknowledged until it is filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, Violation, register
from raysim.protocols.replication.checks import Events, obs, violation


class Data(NamedTuple):
    """One transmission of message ``seq``; ``born`` is the time of its first transmission."""

    seq: int
    born: int


class Ack(NamedTuple):
    """``seq`` arrived (the RTT sample); with cumulative acks every number <= ``cum`` did."""

    seq: int
    cum: int


class RetryAckParams(Params):
    """Parameters of retry-with-ack (times in ticks)."""

    senders: int = Field(1, ge=1, description="nodes 0..senders-1 send; the others receive")
    messages: int = Field(100, ge=1, description="messages each sender streams")
    interval: int = Field(10, ge=1, description="ticks between two new messages")
    window: int = Field(8, ge=1, description="messages in flight per channel")
    timeout: Literal["fixed", "backoff", "adaptive"] = "adaptive"
    rto: int = Field(300, ge=1, description="the fixed timeout, or the first one")
    cap: int = Field(5000, ge=1, description="largest timeout (backoff and adaptive)")
    min_rto: int = Field(1, ge=1, description="smallest adaptive timeout")
    jitter: float = Field(0.0, ge=0.0, lt=1.0, description="timeouts x U[1-j, 1+j]")
    ack: Literal["each", "cumulative"] = "each"
    in_order: bool = True
    max_retries: int = Field(0, ge=0, description="retransmissions before giving up; 0 = never")


QUEUED, IN_FLIGHT, ACKED, GAVE_UP = "queued", "in_flight", "acked", "gave_up"
# The sender's per-message phases as data: (phase, event) -> next phase.
TRANSITIONS: dict[tuple[str, str], str] = {
    (QUEUED, "release"): IN_FLIGHT,
    (IN_FLIGHT, "timeout"): IN_FLIGHT,
    (IN_FLIGHT, "ack"): ACKED,
    (IN_FLIGHT, "give_up"): GAVE_UP,
}


def step(phase: str, event: str) -> str:
    """The next phase of a message, or ValueError naming an illegal transition."""
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise ValueError(f"sender: illegal event {event!r} for a message {phase}") from None


@dataclass
class Flight:
    """A message in flight on one channel."""

    born: int
    sent_at: int
    timer: int
    attempts: int = 1
    phase: str = IN_FLIGHT


@dataclass
class Channel:
    """A sender's stream to one receiver, with its RFC 6298 estimator."""

    released: int = 0  # messages handed to the window so far
    finished: int = 0  # acked or given up
    flights: dict[int, Flight] = field(default_factory=dict)
    srtt: float = -1.0
    rttvar: float = 0.0
    rto: float = 0.0


@dataclass
class Inbox:
    """A receiver's view of one sender's stream."""

    received: set[int] = field(default_factory=set)
    contiguous: int = 0  # every seq below has been received
    applied_to: int = 0  # in-order: every seq below has been applied
    held: dict[int, int] = field(default_factory=dict)  # in-order hold-back: seq -> born


PRODUCE, RTO = "produce", "rto"


@register("replication.retry_ack")
class RetryAck(Protocol):
    """Retry-with-ack (Algorithm 1): numbered streams, acks, fixed/backoff/adaptive timeouts."""

    message_types: ClassVar[tuple[str, ...]] = ("Data", "Ack")

    log_needs: ClassVar[str] = "observations"  # its checks and log metrics read obs rows

    Params: ClassVar[type[RetryAckParams]] = RetryAckParams
    milestones: ClassVar[tuple[str, ...]] = ("done",)
    checks: ClassVar[tuple[str, ...]] = ("applied_twice", "out_of_order_apply")
    report: ClassVar[str | None] = "raysim.analysis.replication:retry_ack_parts"

    def __init__(self, params: RetryAckParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.produced = 0
        self.channels: dict[int, Channel] = {}
        self.inboxes: dict[int, Inbox] = {}
        self.done = False
        self.applied = 0  # receiver: messages applied, over all senders

    # --- configuration and results ------------------------------------------------------

    @classmethod
    def check(cls, params: RetryAckParams, n_nodes: int) -> None:
        """There must be at least one receiver."""
        if params.senders >= n_nodes:
            raise ValueError(f"senders ({params.senders}) must be below network.nodes ({n_nodes})")

    @classmethod
    def metrics(cls, params: RetryAckParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node and the share of nodes that finished (from the run's counts)."""
        return {
            "messages_per_node": stats["sent"] / stats["nodes"],
            "done_fraction": stats.get("done_nodes", 0) / stats["nodes"],
        }

    @classmethod
    def log_metrics(cls, params: RetryAckParams, events: Events, n_nodes: int) -> dict[str, float]:
        """Delivery, duplicates, order, transmissions per message and latency, from the log."""
        return stream_metrics(params, events, n_nodes)

    @classmethod
    def safety(cls, params: RetryAckParams, events: Events) -> list[Violation]:
        """No message applied twice; with ``in_order``, none applied after a higher one."""
        out = applied_twice(events)
        if params.in_order:
            out += out_of_order(events)
        return out

    # --- both roles ---------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        if self.node < self.p.senders:
            for dst in range(self.p.senders, ctx.n_nodes):
                self.channels[dst] = Channel(rto=float(self.p.rto))
            ctx.set_timer(0, PRODUCE)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == PRODUCE:
            self.produced += 1
            for dst, ch in self.channels.items():
                self._release(ctx, dst, ch)
            if self.produced < self.p.messages:
                ctx.set_timer(self.p.interval, PRODUCE)
        else:
            _, dst, seq = tag
            self._expire(ctx, dst, seq)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if type(msg) is Data:
            self._receive(ctx, src, msg)
        elif type(msg) is Ack:
            self._acked(ctx, src, msg)

    # --- sender -------------------------------------------------------------------------

    def _timeout(self, ctx: Context, ch: Channel, attempts: int) -> int:
        p = self.p
        if p.timeout == "fixed":
            t = float(p.rto)
        elif p.timeout == "backoff":
            t = float(min(p.cap, p.rto * 2 ** min(attempts - 1, 40)))
        else:
            t = ch.rto
        if p.jitter > 0:
            t *= 1.0 + p.jitter * (2.0 * ctx.rng.random() - 1.0)
        return max(1, round(t))

    def _release(self, ctx: Context, dst: int, ch: Channel) -> None:
        while ch.released < self.produced and len(ch.flights) < self.p.window:
            seq = ch.released
            ch.released += 1
            step(QUEUED, "release")
            timer = ctx.set_timer(self._timeout(ctx, ch, 1), (RTO, dst, seq))
            ch.flights[seq] = Flight(born=ctx.now, sent_at=ctx.now, timer=timer)
            ctx.send(dst, Data(seq, ctx.now))

    def _expire(self, ctx: Context, dst: int, seq: int) -> None:
        ch = self.channels[dst]
        f = ch.flights.get(seq)
        if f is None:
            return
        p = self.p
        if p.max_retries and f.attempts > p.max_retries:
            f.phase = step(f.phase, "give_up")
            self._finish(ctx, dst, ch, seq, "give_up")
            return
        f.phase = step(f.phase, "timeout")
        if p.timeout == "adaptive":
            ch.rto = min(float(p.cap), 2.0 * ch.rto)  # RFC 6298 §5.5
        f.attempts += 1
        f.sent_at = ctx.now
        f.timer = ctx.set_timer(self._timeout(ctx, ch, f.attempts), (RTO, dst, seq))
        ctx.send(dst, Data(seq, f.born))

    def _sample(self, ch: Channel, rtt: float) -> None:
        """RFC 6298 §2: update SRTT, RTTVAR and RTO from one round trip."""
        if ch.srtt < 0:
            ch.srtt, ch.rttvar = rtt, rtt / 2.0
        else:
            ch.rttvar = 0.75 * ch.rttvar + 0.25 * abs(ch.srtt - rtt)
            ch.srtt = 0.875 * ch.srtt + 0.125 * rtt
        rto = ch.srtt + max(1.0, 4.0 * ch.rttvar)
        ch.rto = min(float(self.p.cap), max(float(self.p.min_rto), rto))

    def _acked(self, ctx: Context, src: int, ack: Ack) -> None:
        ch = self.channels.get(src)
        if ch is None:
            return
        f = ch.flights.get(ack.seq)
        if f is not None and f.attempts == 1:  # Karn: no samples from retransmitted messages
            self._sample(ch, float(ctx.now - f.sent_at))
        if self.p.ack == "each":
            retired = [ack.seq] if f is not None else []
        else:
            retired = sorted(s for s in ch.flights if s <= ack.cum)
        for seq in retired:
            fl = ch.flights[seq]
            fl.phase = step(fl.phase, "ack")
            ctx.cancel_timer(fl.timer)
            self._finish(ctx, src, ch, seq, "acked")
        self._release(ctx, src, ch)

    def _finish(self, ctx: Context, dst: int, ch: Channel, seq: int, how: str) -> None:
        f = ch.flights.pop(seq)
        ch.finished += 1
        ctx.emit(how, f.attempts, peer=dst, ref=seq)
        if how == "give_up":
            self._release(ctx, dst, ch)
        m = self.p.messages
        if not self.done and all(c.finished == m for c in self.channels.values()):
            self.done = True
            ctx.emit("done", ctx.now)

    # --- receiver -----------------------------------------------------------------------

    def _receive(self, ctx: Context, src: int, msg: Data) -> None:
        box = self.inboxes.setdefault(src, Inbox())
        seq = msg.seq
        if seq in box.received:
            ctx.emit("duplicate", seq, peer=src)
        else:
            box.received.add(seq)
            while box.contiguous in box.received:
                box.contiguous += 1
            if not self.p.in_order:
                self._apply(ctx, src, seq, msg.born)
            else:
                box.held[seq] = msg.born
                while box.applied_to < box.contiguous:  # the prefix is complete: apply it
                    s = box.applied_to
                    box.applied_to += 1
                    self._apply(ctx, src, s, box.held.pop(s))
        ctx.send(src, Ack(seq, box.contiguous - 1 if self.p.ack == "cumulative" else -1))

    def _apply(self, ctx: Context, src: int, seq: int, born: int) -> None:
        ctx.emit("apply", seq, peer=src)
        ctx.emit("latency", ctx.now - born, peer=src, ref=seq)
        self.applied += 1
        if self.applied == self.p.senders * self.p.messages:
            ctx.emit("done", ctx.now)


# --- checks and metrics over the log -----------------------------------------------------


def applied_twice(events: Events) -> list[Violation]:
    """Every ``apply`` of a (receiver, sender, seq) that was already applied."""
    a = obs(events, "apply")
    seen: set[tuple[int, int, int]] = set()
    out = []
    for t, n, s, v in zip(a.time.tolist(), a.node.tolist(), a.peer.tolist(), a.value.tolist(),
                          strict=True):
        key = (n, s, int(v))
        if key in seen:
            out.append(violation("applied_twice", t, n, f"message {int(v)} from {s}", s))
        seen.add(key)
    return out


def out_of_order(events: Events) -> list[Violation]:
    """Every ``apply`` at a receiver of a seq below one it already applied from that sender."""
    a = obs(events, "apply")
    top: dict[tuple[int, int], int] = {}
    out = []
    for t, n, s, v in zip(a.time.tolist(), a.node.tolist(), a.peer.tolist(), a.value.tolist(),
                          strict=True):
        seq, key = int(v), (n, s)
        if seq < top.get(key, -1):
            out.append(violation("out_of_order_apply", t, n,
                                 f"message {seq} from {s} after {top[key]}", s))
        top[key] = max(top.get(key, -1), seq)
    return out


def stream_metrics(params: RetryAckParams, events: Events, n_nodes: int) -> dict[str, float]:
    """``delivered_ratio``, ``applied_twice``, ``out_of_order_applied``, ``tx_per_message``
    (transmissions per acked message), ``tx_per_delivered``, ``duplicates_per_message``,
    ``gave_up``, latency percentiles ``latency_p50/p90/p99`` and ``completion_time``."""
    expected = params.senders * (n_nodes - params.senders) * params.messages
    a = obs(events, "apply")
    keys = np.stack([a.node, a.peer, a.value.astype(np.int64)], axis=1) if len(a.time) else None
    unique = 0 if keys is None else len(np.unique(keys, axis=0))
    acked, gave_up = obs(events, "acked"), obs(events, "give_up")
    tx = float(acked.value.sum() + gave_up.value.sum())
    lat = obs(events, "latency").value
    done = obs(events, "done")
    done_t = done.time[done.node < params.senders]
    out = {
        "delivered_ratio": unique / expected,
        "applied_twice": float(len(a.time) - unique),
        "out_of_order_applied": float(len(out_of_order(events))),
        "tx_per_message": float(acked.value.mean()) if len(acked.value) else float("nan"),
        "tx_per_delivered": tx / unique if unique else float("nan"),
        "duplicates_per_message": len(obs(events, "duplicate").time) / max(unique, 1),
        "gave_up": float(len(gave_up.time)),
        "completion_time": float(done_t.max()) if len(done_t) == params.senders
        else float("nan"),
    }
    for q in (50, 90, 99):
        out[f"latency_p{q}"] = float(np.percentile(lat, q)) if len(lat) else float("nan")
    return out
