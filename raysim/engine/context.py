"""What a per-node protocol's handlers act through: the shard's :class:`ShardContext`.

One context object serves every node of a shard; the engine sets ``node``, ``now`` and the
node's local index before each handler call. This is the engine's hot path: sends, timers
and observations are appended as tuples to plain lists and become numpy columns once per
window (see :mod:`raysim.engine.pernode`, the driver that owns the state it points at).
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from raysim.engine.observe import check_int, check_name, check_value
from raysim.engine.order import P_TIMER
from raysim.network.topology import Topology
from raysim.values.rng import _C1, _C2, GOLDEN, MASK64, NodeRng, mix64_array


def node_keys(key: int, lo: int, hi: int) -> list[int]:
    """Per-node 64-bit keys for nodes lo..hi-1 (vectorised; a pure function of key and id)."""
    ids = np.arange(lo, hi, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words: list[int] = mix64_array(ids * np.uint64(GOLDEN) + np.uint64(key)).tolist()
    return words


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run a simulation with the cyclic garbage collector paused (collected at the end).

    NOTE: a window allocates hundreds of thousands of short-lived tuples, and every few
    thousand allocations the collector would rescan the 10^5 live node objects: that doubled
    the cost of a run at 10^5 nodes. Protocol state is plain data that reference counting
    frees, so the engine collects cycles only every 256 windows or more
    (:meth:`Shard._collect`).
    What existed before the run (modules, configuration, earlier runs' objects) is frozen
    for the run's duration (``gc.freeze``), so those collections scan only the run's own
    objects: at 1024 Chord nodes they cost 1.4 s of CPU unfrozen, 0.4 s frozen.
    """
    was_on = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_on:
            gc.enable()


class ShardContext:
    """The :class:`~raysim.api.protocol.Context` the engine hands to handlers.

    One object serves every node of a shard; the engine sets ``node``, ``now`` and ``_li``
    (the node's local index) before each call. NOTE: this is the engine's hot path. Sends,
    timers and observations are appended as tuples to plain lists and turned into numpy
    columns once per window; the per-node arrays are bound here to save lookups.
    """

    __slots__ = (
        "_adj",
        "_cancelled",
        "_deg",
        "_epochs",
        "_evseq",
        "_late",
        "_li",
        "_new_timers",
        "_nseq",
        "_obs",
        "_rngs",
        "_sends",
        "_seqs",
        "_storage",
        "_topology",
        "_tseqs",
        "_window_end",
        "cause",
        "n_nodes",
        "node",
        "now",
        "seed",
    )

    def __init__(
        self,
        n_nodes: int,
        topology: Topology,
        send_seq: list[int],
        timer_seq: list[int],
        event_seq: list[int],
        epochs: list[int],
        rngs: list[NodeRng],
        cancelled: set[tuple[int, int]],
        storage: list[dict[str, Any]],
        seed: int = 0,
    ) -> None:
        self.n_nodes = n_nodes
        self.seed = seed
        self.node = -1
        self.now = 0
        self._li = -1
        self.cause = -1  # the msg_id or timer id being handled; -1 in lifecycle handlers
        self._evseq = -1  # the seq of the event being handled (the cause of its sends)
        self._nseq = event_seq
        self._window_end = 0
        self._seqs = send_seq
        self._tseqs = timer_seq
        self._epochs = epochs
        self._rngs = rngs
        self._topology = topology
        self._adj = topology.flat
        self._deg = topology.degree
        self._cancelled = cancelled
        self._storage = storage
        # (time, node, dst, per-sender sequence, payload, seq, cause)
        self._sends: list[tuple[int, int, int, int, Any, int, int]] = []
        self._new_timers: list[tuple[int, int, int, int, Any]] = []
        self._late: list[tuple[Any, ...]] = []
        # (time, node, name, value, peer, ref, seq, value type code)
        self._obs: list[tuple[int, int, str, Any, int, int, int, int]] = []

    def send(self, dst: int, msg: object) -> int:
        """Send ``msg`` to ``dst`` (routed at the end of the window); returns the message id."""
        li = self._li
        seqs = self._seqs
        s = seqs[li]
        seqs[li] = s + 1
        ns = self._nseq
        q = ns[li]
        ns[li] = q + 1
        node = self.node
        self._sends.append((self.now, node, dst, s, msg, q, self._evseq))
        return (node << 32) | s

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        """Fire ``on_timer(ctx, tag)`` after ``delay`` ticks; returns the timer id."""
        if delay < 0:
            raise ValueError(f"timer delay must be >= 0 ticks, got {delay}")
        li = self._li
        tid = self._tseqs[li]
        self._tseqs[li] = tid + 1
        when = self.now + delay
        if when < self._window_end:
            heapq.heappush(self._late, (when, P_TIMER, self.node, tid, 0, self._epochs[li], tag))
        else:
            self._new_timers.append((when, self.node, tid, self._epochs[li], tag))
        return tid

    def cancel_timer(self, timer_id: int) -> None:
        """Cancel a pending timer of this node (an id it was never given is ignored)."""
        if 0 <= timer_id < self._tseqs[self._li]:
            self._cancelled.add((self.node, timer_id))

    def emit(self, name: str, value: Any = 1.0, peer: int = -1, ref: int = -1) -> None:
        """Record an observation (``peer`` and ``ref`` fill the row's peer and msg_id).

        The arguments are checked here, inside the handler (see
        :mod:`raysim.engine.observe`); NOTE: a float value with plain int peer and ref takes
        the fast path.
        """
        if type(value) is float and value == value:
            code = 0
        else:
            value, code = check_value(value)
        if type(name) is not str or not name:
            check_name(name)
        if type(peer) is not int or type(ref) is not int or not -1 <= peer < 2**63:
            peer, ref = check_int(peer, "peer"), check_int(ref, "ref")
        elif not -(2**63) <= ref < 2**63:
            check_int(ref, "ref")
        li = self._li
        ns = self._nseq
        q = ns[li]
        ns[li] = q + 1
        self._obs.append((self.now, self.node, name, value, peer, ref, q, code))

    # --- the driver's side: what the window produced ------------------------------------------

    def _marks(self) -> tuple[int, int, int]:
        """How many sends, timers and observations the window has produced so far."""
        return len(self._sends), len(self._new_timers), len(self._obs)

    def _truncate(self, marks: tuple[int, int, int]) -> None:
        """Forget what was produced after ``marks`` (a crashing node's last acts)."""
        del self._sends[marks[0]:]
        del self._new_timers[marks[1]:]
        del self._obs[marks[2]:]

    def _take_sends(self) -> tuple[Sequence[Any] | None, ...] | None:
        """The window's sends as columns (time, src, dst, sequence, payloads, seq, cause,
        type codes), or None; the type codes are None here (the driver looks them up; the
        compiled context does it at each send)."""
        if not self._sends:
            return None
        cols = (*zip(*self._sends, strict=True), None)
        self._sends = []
        return cols

    def _take_timers(self) -> tuple[tuple[np.ndarray, ...], list[Any]] | None:
        """Timers set for later windows as int64 columns (time, node, id, epoch) and tags,
        or None."""
        if not self._new_timers:
            return None
        when, nd, tid, ep, tags = zip(*self._new_timers, strict=True)
        self._new_timers = []
        return tuple(np.array(c, dtype=np.int64) for c in (when, nd, tid, ep)), list(tags)

    @property
    def rng(self) -> NodeRng:
        """This node's random stream."""
        return self._rngs[self._li]

    @property
    def peers(self) -> Sequence[int]:
        """This node's neighbours."""
        return self._topology.peers(self.node)

    def random_peer(self) -> int:
        """A uniformly random neighbour (never the node itself)."""
        # NOTE: NodeRng.next_u64 inlined (the same word of the same stream): this is the
        # hottest draw of the per-node path and a method call costs as much as the mixing.
        r = self._rngs[self._li]
        c = r._ctr + 1
        r._ctr = c
        x = (r._key + c * GOLDEN) & MASK64
        x = ((x ^ (x >> 30)) * _C1) & MASK64
        x = ((x ^ (x >> 27)) * _C2) & MASK64
        w = x ^ (x >> 31)
        adj = self._adj
        if adj is None:
            v = (w * (self.n_nodes - 1)) >> 64
            return v + (v >= self.node)
        deg = self._deg
        return adj[self._li * deg + ((w * deg) >> 64)]

    @property
    def storage(self) -> dict[str, Any]:
        """Stable storage that survives crash-recovery."""
        return self._storage[self._li]
