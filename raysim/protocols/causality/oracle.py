"""The happens-before graph of an event log, with numpy alone: the oracle of the checks.

Theory of operation
-------------------
An event log holds its run's happens-before graph (Lamport 1978): each node's events in
program order (``seq``), and an edge from every ``send`` to the row that received it (by
default its ``deliver``, matched on ``msg_id``). :func:`build` turns the log's columns (a
mapping of names to numpy arrays, as a protocol's ``safety`` hook receives them) into that
graph: the event rows in (node, program order), each event's predecessor at its node
(``prev``) and the send it received (``parent``), and a topological order.

The checks then walk the graph once, in topological order, carrying a summary of each
event's causal past, so they cost time linear in the log (times the vector width for vector
clocks) rather than quadratic in it:

* :func:`clock_condition` — a protocol's own clocks (observations) satisfy a → b ⇒
  C(a) < C(b) iff, for every stamped ``b``, the largest stamp in its strict causal past is
  below C(b) (for vectors: the entry-wise maximum of the past is ≤ V(b), and no stamp of
  the past equals V(b), which is checked along the chain of immediate stamped
  predecessors);
* :func:`causal_deliveries` — counts, per source, how many of its broadcasts are in each
  event's causal past, for the causal-order oracle of causal broadcast.

:mod:`raysim.analysis.causality` builds on the same graph for the pairwise questions (→, ←
or ∥; causal past and future; all pairs classified) of small runs.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

EVENT_KINDS: tuple[str, ...] = (
    "start",
    "send",
    "deliver",
    "timer",
    "obs",
    "crash",
    "recover",
    "join",
    "leave",
)

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Graph:
    """The happens-before graph of a log's event rows.

    ``rows`` are the indexes, into the log's columns, of its events in the order (node,
    program order); event ``e`` of the graph is row ``rows[e]``. ``node``, ``pos`` (1-based
    place in the node's order), ``prev`` (the previous event at the node, -1), ``parent``
    (the send a receipt received, -1) and ``order`` (a topological order) are per event.
    """

    rows: Ints
    node: Ints
    pos: Ints
    prev: Ints
    parent: Ints
    order: Ints

    def __len__(self) -> int:
        return len(self.rows)


def _str(col: Any) -> npt.NDArray[np.object_]:
    return np.asarray([None if v is None else str(v) for v in col], dtype=object)


def topological(prev: Ints, parent: Ints, time: Ints) -> Ints:
    """A topological order of the events (program-order and message edges)."""
    n = len(prev)
    order = np.argsort(time, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    src_rank = np.where(prev >= 0, rank[np.maximum(prev, 0)], -1)
    par_rank = np.where(parent >= 0, rank[np.maximum(parent, 0)], -1)
    if bool((src_rank < rank).all() and (par_rank < rank).all()):
        return order  # the common case: in time order every edge points forward
    # NOTE: a message delivered in the tick it was sent, to a node sorted first.
    ts: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for e in range(n):
        ts.add(e, *[int(x) for x in (prev[e], parent[e]) if x >= 0])
    try:
        return np.fromiter(ts.static_order(), dtype=np.int64, count=n)
    except graphlib.CycleError:
        raise ValueError("the event log's message edges form a cycle: not one run's log") from None


def build(events: Mapping[str, Any], receipts: npt.ArrayLike | None = None) -> Graph:
    """The graph of a log given as columns (``time``, ``kind``, ``node``, ``msg_id``, and
    ``seq`` where the log has it; arrays of equal length).

    ``receipts`` (a boolean mask over the rows) names the rows that receive messages
    instead of the ``deliver`` rows, e.g. observations whose ``msg_id`` (their ``ref``)
    names the message whose content they applied.
    """
    kind = _str(events["kind"])
    node_all = np.asarray(events["node"], dtype=np.int64)
    time_all = np.asarray(events["time"], dtype=np.int64)
    mid_all = np.asarray(events["msg_id"], dtype=np.int64)
    is_event = np.isin(kind, EVENT_KINDS)
    rows = np.flatnonzero(is_event)
    # NOTE: without a ``seq`` column (a log from before program order was logged), the row
    # order at equal times is the best available program order.
    if "seq" in events:
        seq = np.asarray(events["seq"], dtype=np.int64)[rows]
        rows = rows[np.lexsort((seq, node_all[rows]))]
    else:
        rows = rows[np.lexsort((rows, time_all[rows], node_all[rows]))]
    node = node_all[rows]
    m = len(rows)
    first = np.ones(m, dtype=bool)
    first[1:] = node[1:] != node[:-1]
    starts = np.flatnonzero(first)
    pos = np.arange(m) - np.repeat(starts, np.diff(np.append(starts, m))) + 1
    prev = np.where(first, -1, np.arange(m) - 1)
    k = kind[rows]
    mid = mid_all[rows]
    if receipts is None:
        is_receipt = k == "deliver"
    else:
        mask = np.asarray(receipts, dtype=bool)
        if mask.shape != (len(kind),):
            raise ValueError("receipts must be a boolean mask over the log's rows")
        is_receipt = mask[rows]
    sends = np.flatnonzero(k == "send")
    # First send row of each msg_id, then each receipt's parent by binary search.
    by_id = sends[np.argsort(mid[sends], kind="stable")]
    ids = mid[by_id]
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    by_id, ids = by_id[keep], ids[keep]
    parent = np.full(m, -1, dtype=np.int64)
    r = np.flatnonzero(is_receipt & (mid >= 0))
    at = np.searchsorted(ids, mid[r])
    hit = (at < len(ids)) & (ids[np.minimum(at, max(len(ids) - 1, 0))] == mid[r]) if len(ids) else (
        np.zeros(len(r), dtype=bool))
    parent[r[hit]] = by_id[at[hit]]
    order = topological(prev, parent, time_all[rows])
    return Graph(rows, node, pos, prev, parent, order)


def stamps(
    g: Graph, events: Mapping[str, Any], name: str, values: str
) -> tuple[Ints, list[Any]]:
    """The events a protocol stamped with its clock (observations ``name``) and the stamps.

    An observation whose ``msg_id`` (its ``ref``) names a message sent or delivered at the
    same node stamps that ``send`` or ``deliver`` (the latest one before it); any other
    stamps itself. The last stamp of an event wins. Returns event ids (ascending) and their
    clocks.
    """
    kind = _str(events["kind"])[g.rows]
    nm = _str(events["name"])[g.rows]
    mid = np.asarray(events["msg_id"], dtype=np.int64)[g.rows]
    vals = events[values]
    is_stamp = (kind == "obs") & (nm == name)
    is_msg = ((kind == "send") | (kind == "deliver")) & (mid >= 0)
    last: dict[tuple[int, int], int] = {}
    out: dict[int, Any] = {}
    for e in range(len(g)):  # (node, program order): ``last`` holds only earlier rows
        if is_msg[e]:
            last[(int(g.node[e]), int(mid[e]))] = e
        elif is_stamp[e]:
            t = last.get((int(g.node[e]), int(mid[e])), -1) if mid[e] >= 0 else -1
            out[t if t >= 0 else e] = vals[g.rows[e]]
    ids = np.asarray(sorted(out), dtype=np.int64)
    return ids, [out[int(e)] for e in ids]


def clock_condition(
    g: Graph, ids: Ints, clocks: list[Any], vector: bool = False
) -> tuple[int, int] | None:
    """The first pair ``(a, b)`` of stamped events with a → b but not C(a) < C(b), or None.

    Linear in the graph: each event carries the largest stamp of its causal past (and for
    vectors, the entry-wise maximum and the nearest stamped predecessors). "First" is the
    pair whose ``b`` comes first in the topological order.
    """
    found = clock_violations(g, ids, clocks, vector, first=True)
    return found[0] if found else None


def clock_violations(
    g: Graph, ids: Ints, clocks: list[Any], vector: bool = False, first: bool = False
) -> list[tuple[int, int]]:
    """Every stamped ``b`` whose causal past holds an ``a`` with not C(a) < C(b), as
    ``(a, b)`` pairs (one witness ``a`` per ``b``), in topological order of ``b``; with
    ``first`` only the first. See :func:`clock_condition`."""
    found: list[tuple[int, int]] = []
    n = len(g)
    stamped = np.full(n, -1, dtype=np.int64)
    stamped[ids] = np.arange(len(ids))
    if not vector:
        c = np.asarray([int(x) for x in clocks], dtype=np.int64)
        best = np.full(n, -1, dtype=np.int64)  # event id of the largest stamp in the past
        for e in g.order.tolist():
            cands = [int(best[p]) for p in (g.prev[e], g.parent[e]) if p >= 0 and best[p] >= 0]
            top = max(cands, key=lambda a: c[stamped[a]], default=-1)
            s = stamped[e]
            if s >= 0:
                if top >= 0 and c[stamped[top]] >= c[s]:
                    found.append((top, e))
                    if first:
                        return found
                if top < 0 or c[s] > c[stamped[top]]:
                    top = e
            best[e] = top
        return found
    width = max((len(x) for x in clocks), default=0)
    v = np.zeros((len(clocks), width), dtype=np.int64)
    for i, x in enumerate(clocks):
        v[i, : len(x)] = np.asarray(x, dtype=np.int64)
    # Per event: the entry-wise maximum of the stamps in its past (-1: none), the stamped
    # event that holds each maximum (the witness), and its nearest stamped predecessors.
    mx = np.full((n, width), -1, dtype=np.int64)
    arg = np.full((n, width), -1, dtype=np.int64)
    near: list[tuple[int, ...]] = [()] * n
    for e in g.order.tolist():
        cur, who = np.full(width, -1, dtype=np.int64), np.full(width, -1, dtype=np.int64)
        nearest: set[int] = set()
        for p in (int(g.prev[e]), int(g.parent[e])):
            if p < 0:
                continue
            take = mx[p] > cur
            cur, who = np.where(take, mx[p], cur), np.where(take, arg[p], who)
            nearest.update((p,) if stamped[p] >= 0 else near[p])
        s = stamped[e]
        if s >= 0:
            over = np.flatnonzero(cur > v[s])
            # NOTE: if some a → b has V(a) = V(b), so has a nearest stamped predecessor of
            # b (everything between is squeezed to the same vector).
            same = [a for a in sorted(nearest) if np.array_equal(v[stamped[a]], v[s])]
            if len(over) or same:
                found.append((int(who[over[0]]), e) if len(over) else (same[0], e))
                if first:
                    return found
            take = v[s] >= cur
            cur, who = np.where(take, v[s], cur), np.where(take, e, who)
            nearest = set()
        mx[e], arg[e] = cur, who
        near[e] = tuple(sorted(nearest))
    return found


def strong_condition(g: Graph, ids: Ints, clocks: list[Any]) -> tuple[int, int] | None:
    """The first pair of stamped events with V(a) < V(b) but not a → b, or None.

    Pairwise over the stamped events (quadratic: for the small runs vector clocks are for).
    "First" is the pair whose ``b`` comes first in the topological order, then ``a``.
    """
    if not len(ids):
        return None
    width = max(len(x) for x in clocks)
    v = np.zeros((len(clocks), width), dtype=np.int64)
    for i, x in enumerate(clocks):
        v[i, : len(x)] = np.asarray(x, dtype=np.int64)
    nodes = np.unique(g.node)
    past = past_counts(g, nodes)[ids]  # (stamps, nodes)
    col = np.searchsorted(nodes, g.node[ids])
    pos = g.pos[ids]
    rank = np.empty(len(g), dtype=np.int64)
    rank[g.order] = np.arange(len(g))
    best: tuple[int, int] | None = None
    for j in np.argsort(rank[ids], kind="stable").tolist():  # b, in topological order
        before = past[j, col] >= pos  # a → b (or a is b)
        le = (v <= v[j]).all(axis=1)
        lt = le & (v != v[j]).any(axis=1)
        bad = np.flatnonzero(lt & ~before)
        if len(bad):
            a = bad[np.argmin(rank[ids[bad]])]
            best = (int(ids[a]), int(ids[j]))
            break
    return best


def clock_safety(
    events: Mapping[str, Any], name: str, values: str, vector: bool = False
) -> list[tuple[int, tuple[int, int], str]]:
    """The clock-condition breaches of a log, for a protocol's ``safety`` hook: per stamped
    event that breaks it, ``(time, (node of a, node of b), detail)``."""
    g = build(events)
    ids, clocks = stamps(g, events, name, values)
    time = np.asarray(events["time"], dtype=np.int64)[g.rows]
    out = []
    for a, b in clock_violations(g, ids, clocks, vector):
        ca, cb = clocks[int(np.searchsorted(ids, a))], clocks[int(np.searchsorted(ids, b))]
        fa = list(map(int, ca)) if vector else int(ca)
        fb = list(map(int, cb)) if vector else int(cb)
        detail = (f"event {g.node[a]}.{g.pos[a]} (t={time[a]}) → {g.node[b]}.{g.pos[b]} "
                  f"(t={time[b]}) but {name} {fa} is not below {fb}")
        out.append((int(time[b]), (int(g.node[a]), int(g.node[b])), detail))
    return out


def past_counts(g: Graph, cols: Ints) -> npt.NDArray[np.int32]:
    """``out[e, j]``: how many events of the node ``cols[j]`` are in the causal past of ``e``
    (``e`` included) — the dense vector clock of every event, over the nodes ``cols``."""
    index = {int(c): j for j, c in enumerate(cols.tolist())}
    colof = np.asarray([index.get(int(x), -1) for x in g.node], dtype=np.int64)
    out = np.zeros((len(g), len(cols)), dtype=np.int32)
    for e in g.order.tolist():
        p, q = g.prev[e], g.parent[e]
        if p >= 0:
            out[e] = out[p]
        if q >= 0:
            np.maximum(out[e], out[q], out=out[e])
        if colof[e] >= 0:
            out[e, colof[e]] = g.pos[e]
    return out


def causal_order_violations(events: Mapping[str, Any]) -> list[tuple[int, int, int, int, int]]:
    """The applications, in a causal-broadcast log, of an operation before a predecessor.

    Observations ``broadcast`` (value: the operation's sequence number at its origin) and
    ``apply`` (value: the sequence number; ``peer``: the origin; ``ref``: the message that
    carried it) with program order give the happens-before relation of broadcasts and
    applications (the edge of a message goes from its send to the application of what it
    carried). ``o1`` precedes ``o2`` if o1's ``broadcast`` → o2's. Returns, per
    application that came before some predecessor, ``(node, time, src, seq, missing)``.
    """
    kind = _str(events["kind"])
    nm = _str(events["name"])
    is_obs = kind == "obs"
    g = build(events, receipts=is_obs & (nm == "apply"))
    k, n = kind[g.rows], nm[g.rows]
    value = np.asarray(events["value"], dtype=np.float64)[g.rows]
    peer = np.asarray(events["peer"], dtype=np.int64)[g.rows]
    time = np.asarray(events["time"], dtype=np.int64)[g.rows]
    bc = np.flatnonzero((k == "obs") & (n == "broadcast"))
    ap = np.flatnonzero((k == "obs") & (n == "apply"))
    if not len(bc):
        return []
    sources = np.unique(g.node[bc])
    past = past_counts(g, sources)
    bpos = [np.sort(g.pos[bc[g.node[bc] == s]]) for s in sources.tolist()]
    op_event = {(int(g.node[e]), int(value[e])): int(e) for e in bc.tolist()}
    col = {int(s): j for j, s in enumerate(sources.tolist())}
    out = []
    applied: dict[int, dict[int, set[int]]] = {}
    for e in np.sort(np.concatenate([bc, ap])).tolist():  # (node, program order)
        j = int(g.node[e])
        seen = applied.setdefault(j, {})
        if n[e] == "broadcast":
            seen.setdefault(j, set()).add(int(value[e]))
            continue
        src, seq = int(peer[e]), int(value[e])
        b = op_event.get((src, seq))
        if b is not None:
            missing = 0
            for s, positions in zip(sources.tolist(), bpos, strict=True):
                count = int(np.searchsorted(positions, past[b, col[s]], side="right"))
                want = count - 1 if s == src else count
                have = seen.get(s, set())
                missing += sum(1 for q in range(1, want + 1) if q not in have)
            if missing:
                out.append((j, int(time[e]), src, seq, missing))
        seen.setdefault(src, set()).add(seq)
    return out
