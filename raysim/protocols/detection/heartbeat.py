"""Heartbeat failure detectors: a fixed timeout, an eventually perfect one (◇P), phi accrual.

Every node sends ``Heartbeat`` to every other node each ``period`` ticks (at its own random
phase) and, every ``check`` ticks, decides for each peer whether to suspect it:

==================  ==============================================================================
protocol            suspect peer p when
==================  ==============================================================================
``heartbeat``       nothing was heard from p for ``timeout`` ticks (fixed)
``eventually_       nothing was heard from p for ``timeout[p]``, which starts at ``timeout`` and
perfect``           grows by ``increment`` each time a suspicion of p proves false (a heartbeat
                    from p arrives while p is suspected): Chandra & Toueg, "Unreliable failure
                    detectors for reliable distributed systems" (JACM 1996), the ◇P detector of
                    their partially synchronous model — after the unknown bound on delays is
                    reached, no correct node is suspected again
``phi``             φ(time since p's last heartbeat) ≥ ``threshold``, φ from the mean and
                    standard deviation of the last ``window`` inter-arrival times (at least
                    ``min_std``; ``acceptable_pause`` is added to the mean, as in Akka's
                    implementation): Hayashibara, Défago, Yared & Katayama, "The φ accrual failure
                    detector" (SRDS 2004); :func:`raysim.phi`
==================  ==============================================================================

A suspected peer is trusted again as soon as a heartbeat from it arrives. A node monitors
nobody for its first ``timeout`` ticks (phi: until it has two inter-arrival samples of a
peer). Each monitor keeps, per peer, the phase of the table :data:`TRANSITIONS` (trusted →
suspected → trusted). Observations: ``suspect`` and ``trust`` with ``peer`` = the node
suspected or trusted again; ``value`` = ticks since it was last heard (``suspect``) or how
long the suspicion lasted (``trust``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, register
from raysim.values.phi import phi


class Heartbeat(NamedTuple):
    """I am alive."""


class DetectorParams(Params):
    """Parameters of the heartbeat detectors (ticks)."""

    kind: Literal["heartbeat", "eventually_perfect", "phi"] = "heartbeat"
    period: int = Field(100, ge=1, description="heartbeat period")
    timeout: int = Field(300, ge=1, description="suspect after this silence (◇P: initially)")
    increment: int = Field(100, ge=0, description="◇P: timeout growth per false suspicion")
    threshold: float = Field(8.0, gt=0.0, description="phi: suspect at this φ")
    window: int = Field(100, ge=2, description="phi: inter-arrival samples kept")
    min_std: float = Field(10.0, gt=0.0, description="phi: floor of the standard deviation")
    acceptable_pause: int = Field(0, ge=0, description="phi: added to the mean (as in Akka)")
    check: int = Field(10, ge=1, description="how often suspicion is evaluated")


TRUSTED, SUSPECTED = "trusted", "suspected"
TRANSITIONS: dict[tuple[str, str], str] = {
    (TRUSTED, "silent"): SUSPECTED,
    (SUSPECTED, "heard"): TRUSTED,
}


class IllegalTransition(RuntimeError):
    """A phase change that :data:`TRANSITIONS` does not allow."""


def step(phase: str, event: str, node: int, peer: int) -> str:
    """The next phase of ``node``'s view of ``peer``; raises on an illegal transition."""
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise IllegalTransition(
            f"detector at node {node}: view of {peer} has no transition from {phase} on {event!r}"
        ) from None


BEAT, CHECK = "beat", "check"


@register("detection.heartbeat", presets={"kind": "heartbeat"})
@register("detection.eventually_perfect", presets={"kind": "eventually_perfect"})
@register("detection.phi", presets={"kind": "phi"})
class HeartbeatDetector(Protocol):
    """Heartbeat failure detection: fixed timeout, ◇P (Chandra & Toueg 1996) or φ accrual."""

    Params: ClassVar[type[DetectorParams]] = DetectorParams
    milestones: ClassVar[tuple[str, ...]] = ("suspect",)
    checks: ClassVar[tuple[str, ...]] = ()
    report: ClassVar[str | None] = "raysim.analysis.detection:section"

    def __init__(self, params: DetectorParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params

    @classmethod
    def check(cls, params: DetectorParams, n_nodes: int) -> None:
        """A timeout of at most one period would suspect every node between two beats."""
        if params.kind != "phi" and params.timeout <= params.period:
            raise ValueError(f"timeout ({params.timeout}) must exceed period ({params.period})")
        if n_nodes < 2:
            raise ValueError("a failure detector needs network.nodes >= 2")

    @classmethod
    def metrics(cls, params: DetectorParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node per second of virtual time."""
        seconds = max(stats["end_time"], 1) / 1000.0
        return {"messages_per_node_s": stats["sent"] / stats["nodes"] / seconds}

    def on_start(self, ctx: Context) -> None:
        self.started = ctx.now
        self.last: dict[int, int] = {}
        self.phase: dict[int, str] = {}
        self.since: dict[int, int] = {}
        self.timeout: dict[int, int] = {}
        self.gaps: dict[int, deque[int]] = {}
        self.sums: dict[int, tuple[int, int]] = {}  # per peer: sum and sum of squares of gaps
        ctx.set_timer(1 + ctx.rng.randrange(self.p.period), BEAT)
        ctx.set_timer(self.p.check, CHECK)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == BEAT:
            ctx.set_timer(self.p.period, BEAT)
            for peer in range(ctx.n_nodes):
                if peer != self.node:
                    ctx.send(peer, Heartbeat())
        else:
            ctx.set_timer(self.p.check, CHECK)
            self._check(ctx)

    def _silent_too_long(self, peer: int, elapsed: int) -> bool:
        p = self.p
        if p.kind == "heartbeat":
            return elapsed >= p.timeout
        if p.kind == "eventually_perfect":
            return elapsed >= self.timeout.get(peer, p.timeout)
        gaps = self.gaps.get(peer)
        if gaps is None or len(gaps) < 2:
            return False
        # NOTE: integer running sums over the window (exact), not a pass over it per check.
        n, total, squares = len(gaps), self.sums[peer][0], self.sums[peer][1]
        mean = total / n
        std = math.sqrt(max(squares / n - mean * mean, 0.0))
        return phi(float(elapsed), mean + p.acceptable_pause, max(std, p.min_std)) >= p.threshold

    def _check(self, ctx: Context) -> None:
        if ctx.now - self.started < self.p.timeout:
            return
        for peer in range(ctx.n_nodes):
            if peer == self.node or self.phase.get(peer, TRUSTED) == SUSPECTED:
                continue
            elapsed = ctx.now - self.last.get(peer, self.started)
            if self._silent_too_long(peer, elapsed):
                self.phase[peer] = step(TRUSTED, "silent", self.node, peer)
                self.since[peer] = ctx.now
                ctx.emit("suspect", elapsed, peer=peer)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        prev = self.last.get(src)
        self.last[src] = ctx.now
        if prev is not None:
            gaps = self.gaps.setdefault(src, deque())
            total, squares = self.sums.get(src, (0, 0))
            gap = ctx.now - prev
            gaps.append(gap)
            total, squares = total + gap, squares + gap * gap
            if len(gaps) > self.p.window:
                old = gaps.popleft()
                total, squares = total - old, squares - old * old
            self.sums[src] = (total, squares)
        if self.phase.get(src, TRUSTED) == SUSPECTED:
            self.phase[src] = step(SUSPECTED, "heard", self.node, src)
            ctx.emit("trust", ctx.now - self.since[src], peer=src)
            if self.p.kind == "eventually_perfect":
                self.timeout[src] = self.timeout.get(src, self.p.timeout) + self.p.increment
