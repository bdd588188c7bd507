"""Happens-before from an event log: relations, causal past and future, clock checks.

Theory of operation
-------------------
The event log holds a run's whole happens-before graph (Lamport 1978): every row at a node
has its place in the node's program order (the ``seq`` column), and every ``deliver`` row
has the ``msg_id`` of the ``send`` row it received. :func:`happens_before` rebuilds the
graph from these two columns alone and computes, for every event ``e``, the vector
``past[e]``: for each node ``j`` of the graph, how many of ``j``'s events are in the causal
past of ``e`` (``e`` included) — Fidge and Mattern's vector clock, computed by the analysis
rather than by any protocol, so it is the *oracle* against which a protocol's own clocks are
checked. Then ``a → b`` exactly when ``a ≠ b`` and ``past[b][node(a)] ≥ pos(a)`` (``pos`` is
the 1-based place of ``a`` in its node's order).

The events of the graph are the rows at which a node does something (:data:`EVENT_KINDS`);
the network's own records (``drop``, ``duplicate``, ``corrupt``) are not events of any node.
A ``deliver`` whose ``send`` is not in the frame (e.g. rows filtered by node or time) has no
message edge. ``send`` rows' ``cause`` (the ``seq`` of the event whose handler sent them) is
implied by program order and so adds no edge, but it is kept for the diagrams.

The dense ``past`` array has one int32 per event and node: this is for the small runs that
one reads pair by pair (tens of nodes, up to ~10⁵ events), not for a 10⁵-node log (select
nodes and times first, as :mod:`raysim.analysis.diagram` does).

Typical use::

    hb = happens_before(frame)                 # frame: one run's events
    hb.relation(3, 7)                          # "→", "←", "∥" or "="
    hb.classify_pairs()                        # every pair of events, classified
    check_clock_condition(frame, "lamport")    # None, or the first pair that breaks it
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from raysim.protocols.causality import oracle

EVENT_KINDS = oracle.EVENT_KINDS
BEFORE, AFTER, CONCURRENT, SAME = "→", "←", "∥", "="

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class HappensBefore:
    """The happens-before graph of one run's events.

    ``events`` holds the event rows (index ``0..m-1``, the event ids every method takes),
    in the order (node, program order), with added columns ``pos`` (1-based place in its
    node's order), ``col`` (the node's column in :attr:`past`), ``parent`` (the event id of
    the send a receipt received, -1 if none) and ``label`` (``"<node>.<pos>"``).
    ``past[e, col]`` counts the events of node ``nodes[col]`` in the causal past of ``e``.
    """

    events: pd.DataFrame
    nodes: Ints
    past: npt.NDArray[np.int32]
    graph: oracle.Graph

    def __len__(self) -> int:
        return len(self.events)

    @property
    def _pos(self) -> Ints:
        return self.events["pos"].to_numpy()

    @property
    def _col(self) -> Ints:
        return self.events["col"].to_numpy()

    def before(self, a: int, b: int) -> bool:
        """True if event ``a`` happened before event ``b`` (a → b)."""
        col, pos = self._col, self._pos
        return a != b and bool(self.past[b, col[a]] >= pos[a])

    def relation(self, a: int, b: int) -> str:
        """``"→"`` (a happened before b), ``"←"`` (b before a), ``"∥"`` or ``"="`` (a is b)."""
        if a == b:
            return SAME
        if self.before(a, b):
            return BEFORE
        if self.before(b, a):
            return AFTER
        return CONCURRENT

    def past_of(self, e: int) -> Ints:
        """The event ids of the causal past of ``e`` (``e`` excluded), ascending."""
        inside = self._pos <= self.past[e, self._col]
        inside[e] = False
        return np.flatnonzero(inside)

    def future_of(self, e: int) -> Ints:
        """The event ids of the causal future of ``e`` (``e`` excluded), ascending."""
        inside = self.past[:, self._col[e]] >= self._pos[e]
        inside[e] = False
        return np.flatnonzero(inside)

    def before_matrix(self, ids: Ints | None = None) -> npt.NDArray[np.bool_]:
        """``M[i, j]`` = ``ids[i] → ids[j]``, over the events ``ids`` (default: all)."""
        ids = np.arange(len(self)) if ids is None else np.asarray(ids, dtype=np.int64)
        col, pos = self._col[ids], self._pos[ids]
        # past[ids[j], col[i]] >= pos[i]
        m = pos[:, None] <= self.past[np.ix_(ids, col)].T
        np.fill_diagonal(m, False)
        return m

    def classify_pairs(self, ids: Ints | None = None) -> pd.DataFrame:
        """Every unordered pair of the events ``ids`` (default: all), classified.

        Columns ``a``, ``b`` (event ids, a < b), their labels, times and kinds, and
        ``relation`` (→, ← or ∥). This is the course's "classify events" activity; it is
        quadratic, so meant for small runs.
        """
        ids = np.arange(len(self)) if ids is None else np.asarray(ids, dtype=np.int64)
        m = self.before_matrix(ids)
        i, j = np.triu_indices(len(ids), k=1)
        rel = np.where(m[i, j], BEFORE, np.where(m[j, i], AFTER, CONCURRENT))
        ev = self.events
        a, b = ids[i], ids[j]
        return pd.DataFrame(
            {
                "a": a,
                "b": b,
                "a_label": ev["label"].to_numpy()[a],
                "b_label": ev["label"].to_numpy()[b],
                "a_time": ev["time"].to_numpy()[a],
                "b_time": ev["time"].to_numpy()[b],
                "a_kind": ev["kind"].to_numpy()[a],
                "b_kind": ev["kind"].to_numpy()[b],
                "relation": rel,
            }
        )

    def lamport(self) -> Ints:
        """The Lamport clock of every event, as Algorithm 5 would compute it on this graph.

        Every event ticks (``prev + 1``); a receipt takes ``max(prev, send) + 1``.
        """
        g = self.graph
        prev, parent = g.prev, g.parent
        out = np.zeros(len(g), dtype=np.int64)
        for e in g.order.tolist():
            t = out[prev[e]] if prev[e] >= 0 else 0
            if parent[e] >= 0 and out[parent[e]] > t:
                t = out[parent[e]]
            out[e] = t + 1
        return out

    def find(self, node: int, pos: int) -> int:
        """The event id of the ``pos``-th event (1-based) of ``node``."""
        hit = np.flatnonzero((self.events["node"].to_numpy() == node) & (self._pos == pos))
        if not len(hit):
            raise KeyError(f"no event {node}.{pos} in this graph")
        return int(hit[0])


def columns(frame: pd.DataFrame) -> dict[str, Any]:
    """A log frame as the mapping of column names to numpy arrays that the oracle (and a
    protocol's ``safety`` hook) reads."""
    return {c: frame[c].to_numpy() for c in frame.columns}


def happens_before(
    frame: pd.DataFrame,
    receipts: npt.ArrayLike | None = None,
) -> HappensBefore:
    """The happens-before graph of one run's events (a DataFrame of event-log rows).

    Needs columns ``time``, ``kind``, ``node``, ``msg_id`` (and ``seq``, the program
    order, where the log has it). By default the receipts of messages are the ``deliver``
    rows; ``receipts`` (a boolean mask over ``frame``'s rows) names other rows instead,
    e.g. the observations at which an application applied what a message carried, whose
    ``msg_id`` (the observation's ``ref``) names the message. The graph itself is built by
    :func:`raysim.protocols.causality.oracle.build`.
    """
    frame = frame.reset_index(drop=True)
    g = oracle.build(columns(frame), receipts)
    ev = frame.iloc[g.rows].reset_index(drop=True)
    ev["kind"] = ev["kind"].astype(str)
    nodes = np.unique(g.node)
    ev["pos"] = g.pos
    ev["col"] = np.searchsorted(nodes, g.node)
    ev["prev"] = g.prev
    ev["parent"] = g.parent
    ev["label"] = [f"{n}.{p}" for n, p in zip(g.node.tolist(), g.pos.tolist(), strict=True)]
    return HappensBefore(ev, nodes, oracle.past_counts(g, nodes), g)


# --------------------------------------------------------------------------- clock checks


@dataclass(frozen=True)
class ClockViolation:
    """A pair of events that breaks a clock condition: ``a`` and ``b`` (event ids of the
    graph), their relation in the graph, their clocks, and which condition broke."""

    a: int
    b: int
    a_label: str
    b_label: str
    relation: str
    a_clock: Any
    b_clock: Any
    condition: str

    def describe(self) -> str:
        """One line: the pair, how they are related, and the clocks that contradict it."""
        return (
            f"{self.condition}: event {self.a_label} {self.relation} {self.b_label} but "
            f"C({self.a_label}) = {self.a_clock} and C({self.b_label}) = {self.b_clock}"
        )


def value_column(frame: pd.DataFrame, vector: bool = False) -> str:
    """The column holding observation values: the typed ``value_vec`` (vectors) or
    ``value_int`` (ints) where the log has them, else ``value``."""
    typed = "value_vec" if vector else "value_int"
    return typed if typed in frame else "value"


def stamped_events(hb: HappensBefore, name: str, values: str | None = None) -> pd.DataFrame:
    """The events a protocol stamped with its own clock: observations named ``name``.

    An observation whose ``msg_id`` (the ``ref`` of the emit) names a message sent or
    delivered at the same node stamps that ``send`` or ``deliver`` row (the latest one
    before the observation, for a duplicated message); any other stamps itself (a local
    event); the last stamp of an event wins (:func:`raysim.protocols.causality.oracle.
    stamps`). Returns columns ``event`` (the stamped event id) and ``clock`` (the value,
    from column ``values``, by default :func:`value_column`'s).
    """
    ev = hb.events
    if values is None:
        values = value_column(ev, vector=name == "vclock")
    cols = {c: ev[c].to_numpy() for c in ("kind", "name", "msg_id", values)}
    ident = oracle.Graph(np.arange(len(ev)), hb.graph.node, hb.graph.pos, hb.graph.prev,
                         hb.graph.parent, hb.graph.order)
    ids, clocks = oracle.stamps(ident, cols, name, values)
    return pd.DataFrame({"event": ids, "clock": pd.Series(clocks, dtype=object)})


def check_clock_condition(
    frame: pd.DataFrame | HappensBefore,
    name: str = "lamport",
    kind: Literal["lamport", "vector"] = "lamport",
    values: str | None = None,
) -> ClockViolation | None:
    """Check a protocol's own clocks (observations ``name``) against the log's graph.

    ``kind="lamport"``: the clock condition, a → b ⇒ C(a) < C(b). ``kind="vector"``: that
    (with < meaning ≤ everywhere and ≠), then the strong condition's converse, V(a) < V(b)
    ⇒ a → b. ``values`` names the column holding the clocks (default: the typed
    ``value_int`` or ``value_vec`` where the log has it, else ``value``). Returns None if
    they hold, else the first violating pair (the one whose later event comes first in the
    graph's topological order): see :mod:`raysim.protocols.causality.oracle`.
    """
    hb = frame if isinstance(frame, HappensBefore) else happens_before(frame)
    if values is None:
        values = value_column(hb.events, vector=kind == "vector")
    st = stamped_events(hb, name, values)
    ids = st["event"].to_numpy(dtype=np.int64)
    clocks = list(st["clock"])
    if not len(ids):
        return None
    vector = kind == "vector"
    pair = oracle.clock_condition(hb.graph, ids, clocks, vector=vector)
    cond = "clock condition"
    if pair is None and vector:
        pair = oracle.strong_condition(hb.graph, ids, clocks)
        cond = "strong clock condition"
    if pair is None:
        return None
    a, b = pair
    clock = dict(zip(ids.tolist(), clocks, strict=True))
    ev = hb.events
    return ClockViolation(a, b, str(ev["label"].iat[a]), str(ev["label"].iat[b]),
                          hb.relation(a, b), _plain(clock[a]), _plain(clock[b]), cond)


def _plain(x: Any) -> Any:
    if isinstance(x, (np.ndarray, list, tuple)):
        return [int(v) for v in x]
    return int(x)


# --------------------------------------------------------------------------- Lamport order


def lamport_disagreement(
    hb: HappensBefore, clocks: npt.ArrayLike | None = None
) -> dict[str, float]:
    """How Lamport order relates to real time and to causality, over every pair of events.

    ``clocks``: a Lamport time per event (default: :meth:`HappensBefore.lamport`). Returns
    ``pairs``; ``realtime_disagree``, the share of pairs at distinct times that the total
    order (L, node) puts the other way round from real time; ``concurrent``, the share of
    pairs that are concurrent; and ``concurrent_ordered``, the share of concurrent pairs
    to which Lamport gives distinct times (an order causality does not imply).
    """
    lam = hb.lamport() if clocks is None else np.asarray(clocks, dtype=np.int64)
    m = hb.before_matrix()
    n = len(hb)
    i, j = np.triu_indices(n, k=1)
    t = hb.events["time"].to_numpy()
    node = hb.events["node"].to_numpy()
    key_i = lam[i] * (int(node.max(initial=0)) + 1) + node[i]
    key_j = lam[j] * (int(node.max(initial=0)) + 1) + node[j]
    distinct = t[i] != t[j]
    disagree = distinct & ((t[i] < t[j]) != (key_i < key_j))
    conc = ~m[i, j] & ~m[j, i]
    ordered = conc & (lam[i] != lam[j])
    pairs = len(i)
    return {
        "pairs": float(pairs),
        "realtime_disagree": float(disagree.sum() / max(int(distinct.sum()), 1)),
        "concurrent": float(conc.sum() / max(pairs, 1)),
        "concurrent_ordered": float(ordered.sum() / max(int(conc.sum()), 1)),
    }


# --------------------------------------------------------------------------- causal broadcast


def causal_order_violations(frame: pd.DataFrame) -> pd.DataFrame:
    """The applications of a causal-broadcast run that came before a causal predecessor.

    The oracle uses the log alone: program order at each node, and an edge from every send
    to the ``apply`` observation (``ref`` = that message's id) at which its operation was
    applied — the happens-before relation of broadcasts and applications. An operation
    ``o1`` causally precedes ``o2`` if ``o1``'s ``broadcast`` observation → ``o2``'s. Each
    ``apply`` of ``o2`` at a node that had not yet applied (or broadcast) every such
    ``o1`` is a violation (:func:`raysim.protocols.causality.oracle.causal_order_violations`).
    Returns one row per violation: ``node``, ``time``, ``src`` and ``seq`` of the operation
    applied, and ``missing`` (how many predecessors were missing).
    """
    rows = oracle.causal_order_violations(columns(frame.reset_index(drop=True)))
    return pd.DataFrame(rows, columns=["node", "time", "src", "seq", "missing"])
