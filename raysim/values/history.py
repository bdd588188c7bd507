"""Happens-before classification of small message-passing histories.

Theory of operation
-------------------
A history lists, for each process, its events in program order; an event is local, the send
of a message, or a receive of one, sends and receives being linked by a message id. Lamport
(CACM 21(7), 1978) defines happens-before (→) as the transitive closure of program order and
send → receive. :func:`classify_history` replays the history — each process runs its events
in order, a receive waiting until its message has been sent — stamping every event with a
Lamport clock and a vector clock (Fidge 1988, Mattern 1989) from :mod:`raysim.values.clocks`.
Because vector clocks characterise causality exactly (a → b ⇔ VC(a) < VC(b)), comparing the
stamps classifies every pair of events as a → b, b → a or a ∥ b (concurrent).

This is the course activity "implement Lamport clocks for a 3-process system; simulate
vector clock comparisons and classify events" as a function; see the doctest of
:func:`classify_history`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from raysim.values.clocks import DenseVectorClock, LamportClock, Order

__all__ = ["Event", "HistoryClassification", "classify_history"]

EventKind = Literal["local", "send", "receive"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a history: a local step, or the send or receive of message ``message``.

    The shorthand strings ``"a"``, ``"b!m1"`` and ``"c?m1"`` (see :meth:`parse`) denote a
    local event ``a``, the send of ``m1`` by event ``b``, and its receive by event ``c``.
    """

    name: str
    kind: EventKind = "local"
    message: Hashable | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"event name must be a non-empty string, got {self.name!r}")
        if self.kind not in ("local", "send", "receive"):
            raise ValueError(
                f"event {self.name!r}: kind must be 'local', 'send' or 'receive', got {self.kind!r}"
            )
        if (self.kind == "local") != (self.message is None):
            raise ValueError(
                f"event {self.name!r}: a {self.kind} event "
                + ("takes no message" if self.kind == "local" else "needs a message id")
            )

    @classmethod
    def parse(cls, text: str) -> Event:
        """Parse ``"name"``, ``"name!msg"`` (send) or ``"name?msg"`` (receive)."""
        if text.count("!") + text.count("?") > 1:
            raise ValueError(f"bad event shorthand {text!r}: use one '!' or '?'")
        for sep, kind in (("!", "send"), ("?", "receive")):
            if sep in text:
                name, _, msg = text.partition(sep)
                if not msg:
                    raise ValueError(f"bad event shorthand {text!r}: expected 'name{sep}message'")
                return cls(name, kind, msg)  # type: ignore[arg-type]
        return cls(text)


@dataclass(frozen=True, slots=True, eq=False)
class HistoryClassification:
    """Result of :func:`classify_history`: timestamps of every event and their relations."""

    events: tuple[str, ...]
    """Event names, process by process, in program order."""
    process: Mapping[str, int]
    """The process of each event."""
    vector: Mapping[str, DenseVectorClock]
    """The vector timestamp of each event."""
    lamport: Mapping[str, int]
    """The Lamport timestamp of each event."""

    def order(self, a: str, b: str) -> Order:
        """How event ``a`` relates to event ``b`` (BEFORE means a → b)."""
        return self.vector[a].compare(self.vector[b])

    def happened_before(self, a: str, b: str) -> bool:
        """True if ``a`` → ``b``."""
        return self.order(a, b) is Order.BEFORE

    def concurrent(self, a: str, b: str) -> bool:
        """True if ``a`` ∥ ``b``."""
        return self.order(a, b) is Order.CONCURRENT

    def pairs(self) -> list[tuple[str, str, Order]]:
        """Every unordered pair of distinct events once, in event order, with its relation."""
        ev = self.events
        return [(a, b, self.order(a, b)) for i, a in enumerate(ev) for b in ev[i + 1 :]]

    def describe(self) -> str:
        """One line per pair: ``a → b``, ``b → a`` or ``a ∥ b``."""
        sym = {Order.BEFORE: "→", Order.CONCURRENT: "∥", Order.EQUAL: "="}
        lines = []
        for a, b, o in self.pairs():
            lines.append(f"{b} → {a}" if o is Order.AFTER else f"{a} {sym[o]} {b}")
        return "\n".join(lines)


def classify_history(history: Sequence[Sequence[Event | str]]) -> HistoryClassification:
    """Replay a history and classify every pair of its events.

    ``history[p]`` lists the events of process ``p`` in program order, as :class:`Event`
    values or shorthand strings: ``"a"`` (local event ``a``), ``"b!m"`` (event ``b`` sends
    message ``m``), ``"c?m"`` (event ``c`` receives ``m``). Event names must be unique;
    each message id is sent exactly once and may be received any number of times. The
    history is replayed with Lamport and vector clocks; a receive waits for its send, and a
    history that could not happen (a cycle of receives waiting for sends) is a ValueError.

    A three-process example (the course's suggested activity; the history itself is ours):

    >>> h = classify_history([
    ...     ["a", "b!m1", "c?m3"],
    ...     ["d?m1", "e!m2", "f"],
    ...     ["g", "h?m2", "i!m3"],
    ... ])
    >>> h.vector["c"], h.lamport["c"]
    (DenseVectorClock([3, 2, 3]), 7)
    >>> h.order("a", "i"), h.order("f", "h"), h.order("g", "c")
    (<Order.BEFORE: 'before'>, <Order.CONCURRENT: 'concurrent'>, <Order.BEFORE: 'before'>)
    >>> h.lamport["g"] < h.lamport["d"], h.concurrent("g", "d")  # L(g) < L(d), yet g ∥ d
    (True, True)
    """
    procs = [[e if isinstance(e, Event) else Event.parse(e) for e in events] for events in history]
    n = len(procs)
    if n == 0:
        raise ValueError("a history needs at least one process")
    process: dict[str, int] = {}
    sender: dict[Hashable, str] = {}
    for p, events in enumerate(procs):
        for e in events:
            if e.name in process:
                raise ValueError(f"event name {e.name!r} is used twice")
            process[e.name] = p
            if e.kind == "send":
                if e.message in sender:
                    raise ValueError(
                        f"message {e.message!r} is sent twice ({sender[e.message]!r}, {e.name!r})"
                    )
                sender[e.message] = e.name
    for events in procs:
        for e in events:
            if e.kind == "receive" and e.message not in sender:
                raise ValueError(f"event {e.name!r} receives message {e.message!r}, never sent")

    vector: dict[str, DenseVectorClock] = {}
    lamport: dict[str, int] = {}
    vcs = [DenseVectorClock.zeros(n)] * n
    lcs = [LamportClock(pid=p) for p in range(n)]
    sent: dict[Hashable, tuple[DenseVectorClock, int]] = {}
    pos = [0] * n
    progress = True
    while progress:
        progress = False
        for p, events in enumerate(procs):
            while pos[p] < len(events):
                e = events[pos[p]]
                if e.kind == "receive":
                    if e.message not in sent:
                        break
                    stamp, ts = sent[e.message]
                    vcs[p], lcs[p] = vcs[p].receive(p, stamp), lcs[p].receive(ts)
                else:
                    vcs[p], lcs[p] = vcs[p].tick(p), lcs[p].tick()
                    if e.kind == "send":
                        sent[e.message] = (vcs[p], lcs[p].time)
                vector[e.name], lamport[e.name] = vcs[p], lcs[p].time
                pos[p] += 1
                progress = True
    stuck = [procs[p][pos[p]].name for p in range(n) if pos[p] < len(procs[p])]
    if stuck:
        raise ValueError(
            f"history cannot happen: receives {stuck} wait for sends that causally follow them"
        )
    order = tuple(e.name for events in procs for e in events)
    return HistoryClassification(
        events=order,
        process=MappingProxyType(process),
        vector=MappingProxyType(vector),
        lamport=MappingProxyType(lamport),
    )
