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

import graphlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

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
        ev = self.events
        prev, parent = ev["prev"].to_numpy(), ev["parent"].to_numpy()
        out = np.zeros(len(ev), dtype=np.int64)
        for e in _topological(prev, parent, ev["time"].to_numpy()):
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


def _program_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The event rows sorted by (node, program order), with ``pos`` added."""
    ev = frame[frame["kind"].astype(str).isin(EVENT_KINDS)].copy()
    ev["kind"] = ev["kind"].astype(str)
    ev["_row"] = np.arange(len(ev))
    # NOTE: without a ``seq`` column (a log from before program order was logged), the
    # row order at equal times is the best available program order.
    keys = ["node", "seq"] if "seq" in ev else ["node", "time", "_row"]
    ev = ev.sort_values(keys, kind="stable").reset_index(drop=True)
    ev["pos"] = ev.groupby("node").cumcount().to_numpy() + 1
    return ev.drop(columns="_row")


def _topological(prev: Ints, parent: Ints, time: Ints | None = None) -> list[int]:
    """A topological order of the graph (program-order and message edges)."""
    n = len(prev)
    order = np.arange(n) if time is None else np.argsort(time, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    src_rank = np.where(prev >= 0, rank[np.maximum(prev, 0)], -1)
    par_rank = np.where(parent >= 0, rank[np.maximum(parent, 0)], -1)
    if bool((src_rank < rank).all() and (par_rank < rank).all()):
        return order.tolist()  # the common case: in time order every edge points forward
    ts: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for e in range(len(prev)):
        ts.add(e, *[int(x) for x in (prev[e], parent[e]) if x >= 0])
    try:
        return list(ts.static_order())
    except graphlib.CycleError:
        raise ValueError("the event log's message edges form a cycle: not one run's log") from None


def happens_before(
    frame: pd.DataFrame,
    receipts: npt.ArrayLike | None = None,
) -> HappensBefore:
    """The happens-before graph of one run's events (a DataFrame of event-log rows).

    Needs columns ``time``, ``kind``, ``node``, ``msg_id`` (and ``seq``, the program
    order, where the log has it). By default the receipts of messages are the ``deliver``
    rows; ``receipts`` (a boolean mask over ``frame``'s rows) names other rows instead,
    e.g. the observations at which an application applied what a message carried, whose
    ``msg_id`` (the observation's ``ref``) names the message: see
    :func:`causal_order_violations`.
    """
    frame = frame.reset_index(drop=True)
    if receipts is not None:
        mask = np.asarray(receipts, dtype=bool)
        if mask.shape != (len(frame),):
            raise ValueError("receipts must be a boolean mask over the frame's rows")
        frame = frame.assign(_receipt=mask)
    ev = _program_order(frame)
    if receipts is None:
        is_receipt = (ev["kind"] == "deliver").to_numpy()
    else:
        is_receipt = ev["_receipt"].to_numpy(dtype=bool)
        ev = ev.drop(columns="_receipt")
    m = len(ev)
    node = ev["node"].to_numpy(dtype=np.int64)
    nodes = np.unique(node)
    col = np.searchsorted(nodes, node)
    pos = ev["pos"].to_numpy(dtype=np.int64)
    prev = np.where(pos > 1, np.arange(m) - 1, -1)
    # Message edges: each receipt's parent is the send row with the same msg_id.
    is_send = (ev["kind"] == "send").to_numpy()
    mid = ev["msg_id"].to_numpy(dtype=np.int64)
    send_ids = pd.Series(np.flatnonzero(is_send), index=mid[is_send])
    send_ids = send_ids[~send_ids.index.duplicated(keep="first")]
    parent = np.full(m, -1, dtype=np.int64)
    r = np.flatnonzero(is_receipt & (mid >= 0))
    found = send_ids.reindex(mid[r])
    ok = found.notna().to_numpy()
    parent[r[ok]] = found.to_numpy()[ok].astype(np.int64)
    past = np.zeros((m, len(nodes)), dtype=np.int32)
    for e in _topological(prev, parent, ev["time"].to_numpy()):
        if prev[e] >= 0:
            past[e] = past[prev[e]]
        if parent[e] >= 0:
            np.maximum(past[e], past[parent[e]], out=past[e])
        past[e, col[e]] = pos[e]
    ev["col"] = col
    ev["prev"] = prev
    ev["parent"] = parent
    ev["label"] = [f"{n}.{p}" for n, p in zip(node.tolist(), pos.tolist(), strict=True)]
    return HappensBefore(ev, nodes, past)


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
    event). Returns columns ``event`` (the stamped event id), ``obs`` (the observation's
    event id) and ``clock`` (the value, from column ``values``, by default
    :func:`value_column`'s); the last stamp of an event wins.
    """
    ev = hb.events
    if values is None:
        values = value_column(ev, vector=name == "vclock")
    is_obs = ((ev["kind"] == "obs") & (ev["name"].astype(str) == name)).to_numpy()
    obs_ids = np.flatnonzero(is_obs)
    node = ev["node"].to_numpy()
    mid = ev["msg_id"].to_numpy()
    kind = ev["kind"].to_numpy()
    msg_rows = np.flatnonzero(np.isin(kind, ("send", "deliver")) & (mid >= 0))
    by_key: dict[tuple[int, int], list[int]] = {}
    for e in msg_rows.tolist():
        by_key.setdefault((int(node[e]), int(mid[e])), []).append(e)
    target = obs_ids.copy()
    for k, o in enumerate(obs_ids.tolist()):
        if mid[o] < 0:
            continue
        cands = [e for e in by_key.get((int(node[o]), int(mid[o])), []) if e < o]
        if cands:
            target[k] = cands[-1]
    out = pd.DataFrame({"event": target, "obs": obs_ids, "clock": ev[values].to_numpy()[obs_ids]})
    return out.drop_duplicates("event", keep="last").sort_values("event").reset_index(drop=True)


def _as_matrix(clocks: pd.Series) -> npt.NDArray[np.int64]:
    rows = [np.asarray(c, dtype=np.int64) for c in clocks]
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def check_clock_condition(
    frame: pd.DataFrame | HappensBefore,
    name: str = "lamport",
    kind: Literal["lamport", "vector"] = "lamport",
    values: str | None = None,
) -> ClockViolation | None:
    """Check a protocol's own clocks (observations ``name``) against the log's graph.

    ``kind="lamport"``: the clock condition, a → b ⇒ C(a) < C(b). ``kind="vector"``: also
    the strong condition, a → b ⇔ V(a) < V(b) (≤ everywhere, ≠). ``values`` names the
    column holding the clocks (default: the typed ``value_int`` or ``value_vec`` where the
    log has it, else ``value``).
    Returns None if every pair of stamped events satisfies it, else the first violating
    pair: the one whose later event comes first (by time, node, program order).
    """
    hb = frame if isinstance(frame, HappensBefore) else happens_before(frame)
    if values is None:
        values = value_column(hb.events, vector=kind == "vector")
    st = stamped_events(hb, name, values)
    ids = st["event"].to_numpy()
    if not len(ids):
        return None
    m = hb.before_matrix(ids)  # m[i, j]: ids[i] → ids[j]
    if kind == "lamport":
        c = st["clock"].to_numpy(dtype=np.int64)
        bad = m & (c[:, None] >= c[None, :])
        conditions = {"clock condition": bad}
    else:
        v = _as_matrix(st["clock"])
        le = (v[:, None, :] <= v[None, :, :]).all(axis=2)
        lt = le & ~(v[:, None, :] == v[None, :, :]).all(axis=2)
        conditions = {
            "clock condition": m & ~lt,
            "strong clock condition": ~m & lt,
        }
    ev = hb.events
    order = ev.assign(_e=np.arange(len(ev))).sort_values(["time", "node", "pos"])["_e"]
    rank = np.empty(len(ev), dtype=np.int64)
    rank[order.to_numpy()] = np.arange(len(ev))
    best: ClockViolation | None = None
    best_key: tuple[int, int] | None = None
    for cond, bad in conditions.items():
        ii, jj = np.nonzero(bad)
        if not len(ii):
            continue
        keys = rank[ids[jj]] * len(ev) + rank[ids[ii]]
        k = int(np.argmin(keys))
        key = (int(rank[ids[jj[k]]]), int(rank[ids[ii[k]]]))
        if best_key is None or key < best_key:
            a, b = int(ids[ii[k]]), int(ids[jj[k]])
            best_key = key
            ca, cb = st["clock"].iloc[ii[k]], st["clock"].iloc[jj[k]]
            best = ClockViolation(
                a,
                b,
                str(ev["label"].iloc[a]),
                str(ev["label"].iloc[b]),
                hb.relation(a, b),
                _plain(ca),
                _plain(cb),
                cond,
            )
    return best


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
    ``o1`` is a violation. Returns one row per violation: ``node``, ``time``, ``src`` and
    ``seq`` of the operation applied, and ``missing`` (how many predecessors were missing).
    """
    frame = frame.reset_index(drop=True)
    name = frame["name"].astype(str)
    is_obs = frame["kind"].astype(str) == "obs"
    receipts = (is_obs & (name == "apply")).to_numpy()
    hb = happens_before(frame, receipts=receipts)
    ev = hb.events
    nm = ev["name"].astype(str).to_numpy()
    kind = ev["kind"].to_numpy()
    bc = np.flatnonzero((kind == "obs") & (nm == "broadcast"))
    ap = np.flatnonzero((kind == "obs") & (nm == "apply"))
    cols = ["node", "time", "src", "seq", "missing"]
    if not len(bc):
        return pd.DataFrame(columns=cols)
    node = ev["node"].to_numpy()
    pos = ev["pos"].to_numpy()
    value = ev["value"].to_numpy()
    # Operation (src, seq) -> its broadcast event; per source, broadcast positions in order.
    op_event = {(int(node[e]), int(value[e])): int(e) for e in bc.tolist()}
    bpos = {int(s): np.sort(pos[bc[node[bc] == s]]) for s in np.unique(node[bc])}
    col_of = {int(n): c for c, n in enumerate(hb.nodes.tolist())}

    def deps(e: int) -> dict[int, int]:
        """Per source, how many of its operations are in the causal past of event e."""
        out = {}
        for s, positions in bpos.items():
            out[s] = int(np.searchsorted(positions, hb.past[e, col_of[s]], side="right"))
        return out

    dep_cache: dict[int, dict[int, int]] = {}
    applied: dict[int, dict[int, set[int]]] = {}
    rows = []
    # Walk each node's events in program order: its applications and its own broadcasts.
    order = np.sort(np.concatenate([bc, ap]))
    peer = ev["peer"].to_numpy()
    for e in order.tolist():
        j = int(node[e])
        seen = applied.setdefault(j, {})
        if nm[e] == "broadcast":
            seen.setdefault(j, set()).add(int(value[e]))
            continue
        src, seq = int(peer[e]), int(value[e])
        b = op_event.get((src, seq))
        if b is not None:
            if b not in dep_cache:
                dep_cache[b] = deps(b)
            need = dep_cache[b]
            missing = 0
            for s, count in need.items():
                want = count - 1 if s == src else count
                have = seen.get(s, set())
                missing += sum(1 for q in range(1, want + 1) if q not in have)
            if missing:
                rows.append((j, int(ev["time"].iloc[e]), src, seq, missing))
        seen.setdefault(src, set()).add(seq)
    return pd.DataFrame(rows, columns=cols)
