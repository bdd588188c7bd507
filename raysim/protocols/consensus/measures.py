"""Election measures from a run's event log: the ``metric.<name>`` columns of Raft and naive.

Read from the observations of :mod:`raysim.protocols.consensus.checks` (``candidate``,
``leader``, ``step_down``, client ``write``/``read``/``ok``) and the ``crash`` rows, so that
``Raft.log_metrics`` and ``NaiveLeader.log_metrics`` can put them in ``runs.parquet`` and
:mod:`raysim.analysis.consensus` can compute the same numbers for a fault it knows from the
configuration (a partition that isolates the leader leaves no row in the log).

* :func:`election_after` — after a fault hits the sitting leader: ticks until a leader of a
  higher term (``election_time``), whether there was one (``elected``), and how many terms
  that took (``election_terms``: 1 = the first election after the fault won, each split
  vote or lost candidacy adds one).
* :func:`raft_metrics` — the above for the first crash of a sitting leader, with
  ``split_votes`` (terms in which some server stood and nobody won), ``terms`` (the highest
  term), ``terms_won``, ``terms_per_election`` (terms started per term won), and, with
  clients, ``ops``, ``latency_mean`` and ``latency_p99``.
* :func:`naive_metrics` — ``leader_changes`` (times a node became leader),
  ``leader_nodes`` (distinct nodes that led) and ``two_leader_ticks`` (ticks during which
  two or more nodes believed they led).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from raysim.protocols.consensus import checks as ck

Interval = tuple[int, int, int, int]  # (node, term, start, end) of a leadership


def leader_at(intervals: Sequence[Interval], t: int) -> tuple[int, int]:
    """(node, term) of the highest-term leadership covering time t, or (-1, -1).

    A leadership that a crash at t itself ends (end == t) counts: it was the leader then.
    """
    best = (-1, -1)
    for nd, term, s, e in intervals:
        if s <= t <= e and term > best[1]:
            best = (nd, term)
    return best


def crash_hits(events: ck.Columns) -> list[tuple[int, np.ndarray]]:
    """``[(time, node mask)]`` of the log's crash rows, in time order (one node each)."""
    kind = np.asarray(events["kind"]).astype(object)
    sel = kind == "crash"
    times = np.asarray(events["time"]).astype(np.int64)[sel]
    nodes = np.asarray(events["node"]).astype(np.int64)[sel]
    n = int(np.asarray(events["node"]).max()) + 1 if len(kind) else 0
    out = []
    for t, nd in sorted(zip(times.tolist(), nodes.tolist(), strict=True)):
        mask = np.zeros(n, dtype=bool)
        mask[nd] = True
        out.append((int(t), mask))
    return out


def election_after(
    events: ck.Columns, intervals: Sequence[Interval], hits: Sequence[tuple[int, np.ndarray]]
) -> dict[str, float]:
    """``election_time``, ``elected``, ``election_terms`` after the first hit of a leader.

    ``hits`` are ``(time, mask of the nodes hit)``; the first one whose mask holds the
    leader of that instant counts. All three are NaN when no fault hit a sitting leader.
    """
    out = {"election_time": np.nan, "elected": np.nan, "election_terms": np.nan}
    leaders = ck.rows_of(events, "leader")
    for start, mask in hits:
        nd, term = leader_at(intervals, start)
        if nd >= 0 and nd < len(mask) and mask[nd]:
            later = (leaders.time >= start) & (leaders.value > term)
            out["elected"] = float(later.any())
            if later.any():
                out["election_time"] = float(leaders.time[later][0] - start)
                out["election_terms"] = float(leaders.value[later][0] - term)
            break
    return out


def raft_metrics(events: ck.Columns) -> dict[str, float]:
    """Raft's log metrics (see the module docstring)."""
    intervals = ck.leader_intervals(events)
    out = election_after(events, intervals, crash_hits(events))
    cands = set(ck.rows_of(events, "candidate").value.astype(int).tolist())
    won = set(ck.rows_of(events, "leader").value.astype(int).tolist())
    out["split_votes"] = float(len(cands - won))
    out["terms"] = float(max([0, *cands, *won]))
    out["terms_won"] = float(len(won))
    out["terms_per_election"] = len(cands | won) / len(won) if won else np.nan
    done = [o for o in ck.history(events) if np.isfinite(o.ret)]
    if done:
        lat = np.array([o.ret - o.call for o in done], dtype=float)
        out["ops"] = float(len(done))
        out["latency_mean"] = float(lat.mean())
        out["latency_p99"] = float(np.percentile(lat, 99))
    return out


def naive_metrics(events: ck.Columns) -> dict[str, float]:
    """The naive election's log metrics (see the module docstring)."""
    leaders = ck.rows_of(events, "leader")
    intervals = ck.leader_intervals(events)
    marks = sorted({t for _n, _t, s, e in intervals for t in (s, e)})
    two = 0
    for a, b in itertools.pairwise(marks):
        if sum(s <= a and e >= b for _n, _t, s, e in intervals) >= 2:
            two += b - a
    return {
        "leader_changes": float(len(leaders)),
        "leader_nodes": float(len(np.unique(leaders.node))),
        "two_leader_ticks": float(two),
    }
