"""The Chord part of ``raysim report``: which figures a results directory supports, built.

:func:`report_parts` looks at what the chord runs of a results directory vary (N, the
fraction p of nodes failed at once, the churn rate R, the routing mode, …) and returns the
matching figures and tables as :class:`Part` values; :mod:`raysim.analysis.report` renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from raysim.analysis import chord as rc
from raysim.analysis import chord_paper as cp
from raysim.analysis.figures import PALETTE
from raysim.analysis.load import Where

KEY_REPLICAS = 2  # the replication factor whose key loss the report also shows
AFTER_FAILURE = 10_000  # "right after the failure": lookups started in the first 10 s
SETTLED = 30_000  # "after stabilization": lookups started 30 s or more after it
CHURN_WARMUP = 10_000  # under churn, lookups started 10 s or more after churn began
MAX_DISTRIBUTIONS = 4  # hop distributions shown at most (for evenly spaced N)
PLACEMENTS = 3  # key-load figure: node placements averaged (as `raysim.analysis.chord load`)


@dataclass(frozen=True)
class Part:
    """One block of the report: a heading, an explanatory note, a figure or a table."""

    title: str
    note: str
    figure: go.Figure | None = None
    table: pd.DataFrame | None = None


def _other_axes(look: pd.DataFrame, x: str, candidates: Sequence[str]) -> list[str]:
    """Axes that vary *within* some value of ``x`` (axes zipped with x are left out)."""
    out = []
    for c in candidates:
        if c != x and c in look and (look.groupby(x)[c].nunique(dropna=False) > 1).any():
            out.append(c)
    return out


def _spread(values: Sequence[float], k: int) -> list[float]:
    vals = sorted(set(values))
    if len(vals) <= k:
        return vals
    idx = np.unique(np.linspace(0, len(vals) - 1, k).round().astype(int))
    return [vals[i] for i in idx]


def _paper_churn(runs: pd.DataFrame) -> pd.DataFrame | None:
    """The Chord paper's churn points, for the runs of its experiment (else None)."""
    name = "experiment.name"
    if name not in runs or set(runs[name].astype(str)) != {cp.EXPERIMENT}:
        return None
    points = cp.churn_points()
    return points if len(points) else None


def report_parts(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The Chord figures and tables for the ``chord`` runs among ``runs`` (empty if none)."""
    runs = rc.chord_runs(where, runs=runs)
    if not len(runs):
        return []
    look = rc.lookups(where, runs=runs)
    axes = [a for a in rc.axes(runs) if a in look]
    parts: list[Part] = []
    n = "network.nodes"
    if look[n].nunique() <= 1:
        ns = look[n].unique().tolist() or runs[n].unique().tolist()
        parts.append(Part(
            "Chord: hops against N (not drawn)",
            f"Path length against N needs runs at several N, and these runs all have N = "
            f"{', '.join(map(str, ns))} (experiments/chord_path_length.toml sweeps N). "
            "The mean hops are in the lookup summary at the end."))
    else:
        by = [n, *_other_axes(look, n, axes)]
        parts.append(Part(
            "Chord: lookup path length against N",
            "Mean hops per lookup (routing steps to the key's predecessor) over all seeds; "
            "bars from the 1st to the 99th percentile; dashed: ½·log₂N (Stoica et al. 2001).",
            rc.fig_hops_vs_n(rc.lookup_summary(look, by))))
    shown = look[look[n].isin(_spread(look[n].unique().tolist(), MAX_DISTRIBUTIONS))]
    dist_by = [n] if look[n].nunique() > 1 else []
    dist_by += [a for a in _other_axes(look, n, axes) if a not in ("fail_fraction", "churn_rate")]
    if shown[n].nunique() == 1 and len(axes) == 1 and axes[0] not in dist_by:
        dist_by = [*dist_by, *axes]
    parts.append(Part("Chord: path length distribution",
                      "Share of lookups (that did not give up) per hop count.",
                      rc.fig_hop_distribution(rc.hop_distribution(shown, dist_by))))
    at = rc.crash_time(runs)
    if "fail_fraction" in axes and at is not None:
        by = ["fail_fraction", *_other_axes(look, "fail_fraction", axes)]
        soon = rc.lookup_summary(look, by, window=(at, at + AFTER_FAILURE))
        later = rc.lookup_summary(look, by, window=(at + SETTLED, np.inf))
        parts.append(Part(
            "Chord: failed lookups against the fraction p of nodes failed at once",
            f"p of the nodes crash at t = {at / 1000:g} s. A lookup fails if it ends at a node "
            "other than the key's successor among the nodes up when it ends, or gives up "
            f"(more than max_retries timeouts). Lookups started in the {AFTER_FAILURE // 1000} s "
            f"after the failure, and {SETTLED // 1000} s or more after it (stabilization has "
            "repaired successors; stale fingers only cost timeouts). Mean over seeds, 95 % "
            "interval. Dotted: the share of keys stored on failed nodes, lost without "
            "replication (the failures of Stoica et al.'s Fig. 11).",
            rc.fig_failures({"right after the failure": soon, "after stabilization": later},
                            "fail_fraction")))
        life = rc.lifecycle(where, runs)
        replicated = look.assign(lost=rc.lost_keys(look, life, runs, replicas=KEY_REPLICAS))
        parts.append(Part(
            "Chord: routing failures and lost keys against p",
            "Two metrics for the lookups started 30 s or more after the failure: routing "
            "failed (solid: gave up or ended at a wrong node) and key lost (dashed: every "
            "node that stored the key at time 0 has failed — the paper's failed lookup, "
            "Stoica et al. 2001 §6.3 and Fig. 11). Without replication (r = 0) only the "
            f"owner stores a key, so about p are lost; with r = {KEY_REPLICAS} the owner's "
            f"{KEY_REPLICAS} successors also hold it (an analysis of what replicas would "
            f"save: the protocol does not copy keys), so about p^{KEY_REPLICAS + 1}. Mean "
            "over seeds, 95 % interval.",
            rc.fig_key_loss({"r = 0": later, f"r = {KEY_REPLICAS}": rc.lookup_summary(
                replicated, by, window=(at + SETTLED, np.inf))}, "fail_fraction")))
        parts.append(Part("Chord: hops and timeouts right after the failure", "",
                          rc.fig_hops_vs(soon, "fail_fraction")))
    start = rc.churn_start(runs)
    if "churn_rate" in axes:
        by = ["churn_rate", *_other_axes(look, "churn_rate", axes)]
        window = (start + CHURN_WARMUP, np.inf)
        summary = rc.lookup_summary(look, by, window=window)
        paper = _paper_churn(runs)
        note = (f"Poisson joins and departures at R per second each from t = {start / 1000:g} "
                f"s; lookups started from t = {window[0] / 1000:g} s. A lookup fails if it "
                "gave up (with max_retries = 0, at its first timeout) or ended at a node other "
                "than the key's successor among the nodes up. Mean over seeds, 95 % interval.")
        if paper is not None:
            note += (" Black: the Chord paper's Fig. 12 as its §6.5 text states it (the "
                     f"estimate 5k/500 with k = 30 s · R failures between stabilizations; "
                     f"{cp.POINTS.name}): the figure's measured points lie 'slightly' above.")
        parts.append(Part(
            "Chord: failed lookups against the churn rate R", note,
            rc.fig_failures({"under churn": summary}, "churn_rate", paper=paper,
                            paper_label=cp.LABEL)))
        parts.append(Part("Chord: hops and timeouts against the churn rate", "",
                          rc.fig_hops_vs(summary, "churn_rate")))
        maint = rc.maintenance(where, runs)
        if maint["messages"].sum() > 0:
            keep = ["churn_rate", *[a for a in _other_axes(look, "churn_rate", axes)
                                    if a in maint]]
            parts.append(Part(
                "Chord: maintenance traffic against the churn rate",
                "Messages sent per live node per second, by kind (message types in the log; "
                "see raysim/protocols/chord_messages.py).",
                rc.fig_maintenance(rc.maintenance_summary(maint[["run_id", "traffic", "messages",
                                                                 "per_node_per_s", *keep]]),
                                   "churn_rate")))
    ring = rc.ring_correctness(where, runs)
    if len(ring):
        fig = go.Figure()
        fig.update_layout(title="Successor pointers that are right", template="plotly_white",
                          height=380, xaxis_title="time (s)", yaxis_title="share of nodes")
        for k, (rid, g) in enumerate(ring.groupby("run_id", sort=True)):
            fig.add_trace(go.Scatter(x=g["time"] / 1000, y=g["correct"], name=str(rid),
                                     mode="lines+markers",
                                     line={"color": PALETTE[k % len(PALETTE)]}))
        parts.append(Part("Chord: ring correctness over time",
                          "From the `ring` snapshots: the share of nodes whose successor is "
                          "the next node up on the identifier circle.", fig))
    n_load = int(min(look[n].max(), 4096))
    parts.append(Part(
        "Consistent hashing: keys per node against virtual nodes",
        f"{n_load} nodes, {100 * n_load} keys (the ring toolkit, no simulation): percentiles "
        f"of keys per physical node divided by the mean, averaged over {PLACEMENTS} node "
        "placements.",
        rc.fig_key_load(rc.key_load(n_load, 100, replicates=PLACEMENTS))))
    moves = rc.keys_moved_on_join(n_load, 100, joins=10)
    parts.append(Part(
        "Consistent hashing: keys moved on a join",
        f"Ten nodes each join a ring of {n_load} (separately): the keys that change owner all "
        f"go to the new node (only_to_new) and are about 1/(N+1) of all keys.",
        table=moves))
    parts.append(Part("Chord: lookup summary", "Per combination; all lookups.",
                      table=rc.lookup_summary(look, axes)))
    return parts


__all__ = ["Part", "report_parts"]
