"""Fake contexts for protocol unit tests: call handlers, look at what they did.

A protocol is a sans-IO state machine, so a unit test needs no engine, no network and no
Ray: build the protocol, hand its handlers a :class:`FakeContext` (per-node protocols) or a
:class:`FakeBatchContext` (:class:`~raysim.api.protocol.BatchProtocol`), and assert on what
was recorded::

    from raysim.testing import FakeContext

    ctx = FakeContext(node=0, n_nodes=3)
    proto = MyProtocol(MyProtocol.Params(), node=0)
    proto.on_start(ctx)
    assert ctx.sent == [...]            # Sent(dst, msg, msg_id, time) records
    ctx.fire_timers(proto, until=1000)  # run due timers in (time, id) order
    ctx.deliver(proto, src=2, msg=...)  # call on_message with a fresh cause id

The fakes behave like the engine where a protocol can tell: :meth:`FakeContext.send`
returns message ids ``node << 32 | per-node sequence``; timer ids count from 0 per node;
``emit`` checks its arguments with the engine's own rules
(:func:`raysim.api.observations.check_observation`); ``cause`` is the id of the message or
timer being handled (-1 in lifecycle handlers); ``rng`` is a real
:class:`~raysim.values.rng.NodeRng` seeded from ``seed`` and the node id (the same stream
for the same seed, though not the stream the engine would give that node in a run).

This module loads neither the engine nor Ray, pyarrow or pandas.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple, cast

import numpy as np

from raysim.api.observations import Value, check_observation
from raysim.api.protocol import BatchProtocol, Context, Protocol
from raysim.values.rng import NodeRng, derive, stream_words, words_to_range, words_to_unit

SEQ_BITS = 32  # a message id is src << SEQ_BITS | the sender's sequence number


class Sent(NamedTuple):
    """One ``ctx.send``: destination, message, its id, and the virtual time it was sent."""

    dst: int
    msg: Any
    msg_id: int
    time: int


class Observation(NamedTuple):
    """One ``ctx.emit``: name, checked value, peer, ref, and the virtual time."""

    name: str
    value: Value
    peer: int
    ref: int
    time: int


@dataclass
class Timer:
    """A timer set with ``ctx.set_timer``: when it fires, its tag, whether it was cancelled."""

    id: int
    when: int
    tag: Hashable
    cancelled: bool = False
    fired: bool = False


class FakeContext:
    """A per-node :class:`~raysim.api.protocol.Context` that records what handlers do.

    ``peers`` defaults to every other node (full membership). Records: :attr:`sent`,
    :attr:`timers` (every timer ever set, by id), :attr:`observations`.
    """

    def __init__(
        self,
        node: int = 0,
        n_nodes: int = 2,
        *,
        now: int = 0,
        seed: int = 0,
        peers: Sequence[int] | None = None,
        storage: dict[str, Any] | None = None,
    ) -> None:
        if not 0 <= node < n_nodes:
            raise ValueError(f"node {node} is not below n_nodes {n_nodes}")
        self.node = node
        self.n_nodes = n_nodes
        self.now = now
        self.seed = seed  # the run's seed (ctx.seed)
        self.cause = -1
        self._peers = list(peers) if peers is not None else None
        self._rng = NodeRng(derive(seed, node))
        self._storage: dict[str, Any] = storage if storage is not None else {}
        self._send_seq = 0
        self.sent: list[Sent] = []
        self.timers: dict[int, Timer] = {}
        self.observations: list[Observation] = []
        self._next_cause = 0

    # --- the Context protocol -----------------------------------------------------------------

    def send(self, dst: int, msg: object) -> int:
        """Record a send; returns its message id (``node << 32 | sequence``)."""
        if not 0 <= dst < self.n_nodes:
            raise ValueError(f"send to {dst}: not a node id below {self.n_nodes}")
        msg_id = (self.node << SEQ_BITS) | self._send_seq
        self._send_seq += 1
        self.sent.append(Sent(dst, msg, msg_id, self.now))
        return msg_id

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        """Record a timer firing ``delay`` ticks from now; returns its id (0, 1, … per node)."""
        if delay < 0:
            raise ValueError(f"timer delay must be >= 0 ticks, got {delay}")
        tid = len(self.timers)
        self.timers[tid] = Timer(tid, self.now + delay, tag)
        return tid

    def cancel_timer(self, timer_id: int) -> None:
        """Cancel a pending timer (an unknown or fired id is ignored, as in the engine)."""
        t = self.timers.get(timer_id)
        if t is not None:
            t.cancelled = True

    def emit(self, name: str, value: Any = 1.0, peer: int = -1, ref: int = -1) -> None:
        """Record an observation, checked exactly as the engine checks it."""
        name, checked, peer, ref = check_observation(name, value, peer, ref)
        self.observations.append(Observation(name, checked, peer, ref, self.now))

    @property
    def rng(self) -> NodeRng:
        """This node's random stream."""
        return self._rng

    @property
    def peers(self) -> Sequence[int]:
        """The node's neighbours: the given list, or every other node."""
        if self._peers is not None:
            return self._peers
        return [p for p in range(self.n_nodes) if p != self.node]

    def random_peer(self) -> int:
        """A uniformly random peer, never this node (drawn from :attr:`rng` as the engine does)."""
        w = self._rng.next_u64()
        if self._peers is None:
            v = (w * (self.n_nodes - 1)) >> 64
            return int(v + (v >= self.node))
        return self._peers[(w * len(self._peers)) >> 64]

    @property
    def storage(self) -> dict[str, Any]:
        """Stable storage (survives :meth:`crash_and_recover`)."""
        return self._storage

    # --- helpers for tests --------------------------------------------------------------------

    def _as_context(self) -> Context:
        # NOTE: a cast, not a conversion: FakeContext implements the Context protocol (its
        # send returns the message id, as the engine's does).
        return cast("Context", self)

    def take_sent(self) -> list[Sent]:
        """The sends recorded so far, clearing the record."""
        out, self.sent = self.sent, []
        return out

    def emitted(self, name: str | None = None) -> list[Value]:
        """Values of the observations recorded (of one name, if given), in order."""
        return [o.value for o in self.observations if name is None or o.name == name]

    def pending(self) -> list[Timer]:
        """Timers not yet fired or cancelled, in firing order (time, then id)."""
        return sorted((t for t in self.timers.values() if not (t.cancelled or t.fired)),
                      key=lambda t: (t.when, t.id))

    def fire_timers(self, proto: Protocol, until: int) -> int:
        """Fire every pending timer due at or before ``until`` in (time, id) order, also ones
        the handlers set meanwhile; ``now`` ends at ``until``. Returns how many fired."""
        heap = [(t.when, t.id) for t in self.pending()]
        heapq.heapify(heap)
        fired = 0
        while heap and heap[0][0] <= until:
            when, tid = heapq.heappop(heap)
            t = self.timers[tid]
            if t.cancelled or t.fired:
                continue
            t.fired = True
            self.now, self.cause = when, tid
            before = len(self.timers)
            proto.on_timer(self._as_context(), t.tag)
            for new in range(before, len(self.timers)):
                heapq.heappush(heap, (self.timers[new].when, new))
            fired += 1
        self.now, self.cause = max(self.now, until), -1
        return fired

    def deliver(self, proto: Protocol, src: int, msg: Any, msg_id: int | None = None) -> None:
        """Call ``proto.on_message(ctx, src, msg)`` with ``cause`` set to ``msg_id`` (by
        default a fresh id from ``src``'s range)."""
        if msg_id is None:
            msg_id = (src << SEQ_BITS) | (1 << (SEQ_BITS - 1)) | self._next_cause
            self._next_cause += 1
        self.cause = msg_id
        try:
            proto.on_message(self._as_context(), src, msg)
        finally:
            self.cause = -1

    def crash_and_recover(self, cls: type[Protocol], params: Any) -> Protocol:
        """Fresh state with the old storage, as after a crash: a new instance, ``on_recover``
        called; pending timers are dropped."""
        for t in self.timers.values():
            t.cancelled = True
        proto = cls(params, self.node)
        self.cause = -1
        proto.on_recover(self._as_context())
        return proto


@dataclass
class FakeBatchContext:
    """The columnar twin of :class:`FakeContext`, for a :class:`BatchProtocol` over nodes
    ``lo..hi-1``; records whole columns.

    :meth:`events` builds a :class:`~raysim.api.protocol.BatchEvents` to pass to handlers.
    Records: :attr:`sent` (one dict of columns per ``send`` call, ``msg_id`` included),
    :attr:`timers` (``node``, ``when``, ``tag``, ``id``), :attr:`observations` (``node``,
    ``time``, ``name``, ``value``, ``peer``, ``ref``).
    """

    n_nodes: int
    lo: int = 0
    hi: int | None = None
    seed: int = 0
    fields: tuple[str, ...] = ()
    sent: list[dict[str, Any]] = field(default_factory=list)
    timers: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        hi = self.n_nodes if self.hi is None else self.hi
        self.hi = hi
        n = hi - self.lo
        self._send_seq = np.zeros(n, dtype=np.int64)
        self._timer_seq = np.zeros(n, dtype=np.int64)
        self._keys = np.array([derive(self.seed, v) for v in range(self.lo, hi)],
                              dtype=np.uint64)
        self._ctr = np.zeros(n, dtype=np.int64)

    @classmethod
    def for_protocol(cls, proto: BatchProtocol, n_nodes: int, seed: int = 0) -> FakeBatchContext:
        """A context over ``proto``'s nodes (``proto.lo..proto.hi``) and message fields."""
        return cls(n_nodes, proto.lo, proto.hi, seed, tuple(type(proto).fields))

    def _li(self, node: Any) -> np.ndarray:
        node = np.asarray(node, dtype=np.int64)
        if len(np.unique(node)) != len(node):
            raise ValueError("the nodes of one batch call must be distinct")
        return node - self.lo

    @staticmethod
    def _occurrence(li: np.ndarray) -> np.ndarray:
        order = np.argsort(li, kind="stable")
        s = li[order]
        first = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1] if len(s) else np.arange(0)
        start = np.repeat(first, np.diff(np.r_[first, len(s)]))
        out = np.empty(len(li), dtype=np.int64)
        out[order] = np.arange(len(s)) - start
        return out

    def events(self, node: Any, time: Any = 0, src: Any = None, mtype: Any = None,
               fields: dict[str, Any] | None = None, tags: list[Any] | None = None) -> Any:
        """A batch of events at distinct ``node``s, for a handler call."""
        node = np.asarray(node, dtype=np.int64)
        n = len(node)
        full = np.full(n, -1, dtype=np.int64)
        return SimpleNamespace(
            node=node, li=self._li(node),
            time=np.broadcast_to(np.asarray(time, dtype=np.int64), (n,)).copy(),
            src=full if src is None else np.broadcast_to(np.asarray(src, np.int64), (n,)).copy(),
            mtype=full if mtype is None else np.broadcast_to(np.asarray(mtype), (n,)).copy(),
            fields={f: np.broadcast_to(np.asarray((fields or {}).get(f, 0.0), np.float64),
                                       (n,)).copy() for f in (*self.fields, *(fields or {}))},
            tags=list(tags) if tags is not None else [None] * n,
        )

    def send(self, src: Any, time: Any, dst: Any, mtype: Any, **fields: Any) -> np.ndarray:
        """Record one message per element; returns their ids (``src << 32 | sequence``)."""
        src = np.asarray(src, dtype=np.int64)
        n = len(src)
        unknown = sorted(set(fields) - set(self.fields))
        if unknown:
            raise ValueError(f"unknown message field {unknown[0]!r}; fields: {self.fields}")
        li = src - self.lo
        seq = self._send_seq[li] + self._occurrence(li)
        np.add.at(self._send_seq, li, 1)
        ids = (src << SEQ_BITS) | seq
        if n:
            dst = np.broadcast_to(np.asarray(dst, dtype=np.int64), (n,))
            if ((dst < 0) | (dst >= self.n_nodes)).any():
                raise ValueError(f"send to a node id outside 0..{self.n_nodes - 1}")
            self.sent.append({
                "src": src, "time": np.broadcast_to(np.asarray(time, np.int64), (n,)).copy(),
                "dst": dst.copy(), "mtype": np.broadcast_to(np.asarray(mtype), (n,)).copy(),
                "msg_id": ids,
                **{f: np.broadcast_to(np.asarray(fields.get(f, 0.0), np.float64), (n,)).copy()
                   for f in self.fields},
            })
        return ids

    def set_timer(self, node: Any, when: Any, tag: str) -> np.ndarray:
        """Record a timer per element at absolute time ``when``; returns their ids."""
        node = np.asarray(node, dtype=np.int64)
        li = node - self.lo
        tid = self._timer_seq[li] + self._occurrence(li)
        np.add.at(self._timer_seq, li, 1)
        if len(node):
            self.timers.append({"node": node, "id": tid, "tag": tag,
                                "when": np.broadcast_to(np.asarray(when, np.int64),
                                                        (len(node),)).copy()})
        return tid

    def emit(self, node: Any, time: Any, name: str, value: Any, peer: Any = -1,
             ref: Any = -1) -> None:
        """Record one observation per element (each checked as :meth:`FakeContext.emit`)."""
        node = np.asarray(node, dtype=np.int64)
        n = len(node)
        if n == 0:
            return
        values = np.broadcast_to(np.asarray(value), (n,))
        peers = np.broadcast_to(np.asarray(peer, dtype=np.int64), (n,))
        refs = np.broadcast_to(np.asarray(ref, dtype=np.int64), (n,))
        checked = [check_observation(name, values[i].item(), int(peers[i]), int(refs[i]))
                   for i in range(n)]
        self.observations.append({
            "node": node, "time": np.broadcast_to(np.asarray(time, np.int64), (n,)).copy(),
            "name": name, "value": [c[1] for c in checked], "peer": peers.copy(),
            "ref": refs.copy(),
        })

    def _words(self, node: Any) -> np.ndarray:
        li = self._li(node)
        self._ctr[li] += 1
        return stream_words(self._keys[li], self._ctr[li])

    def random(self, node: Any) -> np.ndarray:
        """One float in [0, 1) per (distinct) node."""
        return words_to_unit(self._words(node))

    def randrange(self, node: Any, n: int) -> np.ndarray:
        """One int in [0, n) per (distinct) node."""
        return words_to_range(self._words(node), n)

    def random_peer(self, node: Any) -> np.ndarray:
        """One random other node per (distinct) node (full membership)."""
        node = np.asarray(node, dtype=np.int64)
        v = words_to_range(self._words(node), self.n_nodes - 1)
        return np.asarray(v + (v >= node), dtype=np.int64)

    def emitted(self, name: str | None = None) -> list[tuple[int, Value]]:
        """``(node, value)`` of every observation recorded (of one name, if given)."""
        return [(int(n), v) for o in self.observations if name is None or o["name"] == name
                for n, v in zip(o["node"], o["value"], strict=True)]


__all__ = ["FakeBatchContext", "FakeContext", "Observation", "Sent", "Timer"]
