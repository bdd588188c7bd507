"""The quorum register in a results directory: stale reads against R + W, latency against quorums.

:func:`quorum_runs` gives one row per run: ``reads``, ``stale_reads`` (count, from
:func:`raysim.protocols.consensus.checks.stale_reads`), ``stale_fraction`` (of completed
reads), ``linearizable`` (1/0, NaN when the search was cut off), ``read_latency`` and
``write_latency`` (mean ticks from invocation to answer), and ``overlap`` = R + W - N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow.dataset as ds

from raysim.analysis.consensus import CONTEXT, LOG_COLUMNS, fig_bars, summary
from raysim.analysis.figures import PALETTE, short
from raysim.analysis.load import Where, load_events, load_runs, varying_params
from raysim.analysis.section import Part
from raysim.protocols.consensus import checks as ck


def quorum_runs(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per quorum-register run: its parameters and the measures above."""
    if runs is None:
        runs = load_runs(where)
    runs = runs[runs["protocol"] == "consensus.quorum_register"].reset_index(drop=True)
    if not len(runs):
        return pd.DataFrame()
    flt = ds.field("kind") == "obs"
    ev = load_events(where, ["run_id", *LOG_COLUMNS], flt, runs=runs)
    for c in ("kind", "name"):
        ev[c] = ev[c].astype(object)
    rows = []
    for run_id, g in ev.groupby("run_id", sort=True):
        g = g.sort_values(["time", "node"], kind="stable")
        cols = {c: g[c].to_numpy() for c in LOG_COLUMNS}
        ops = ck.history(cols)
        reads = [o for o in ops if o.kind == "read" and np.isfinite(o.ret)]
        writes = [o for o in ops if o.kind == "write" and np.isfinite(o.ret)]
        stale = len(ck.stale_reads(cols))
        verdict = ck.is_linearizable(ops, max_steps=200_000)
        rows.append({
            "run_id": run_id,
            "reads": float(len(reads)),
            "stale_reads": float(stale),
            "stale_fraction": stale / len(reads) if reads else np.nan,
            "linearizable": np.nan if verdict is None else float(verdict),
            "read_latency": float(np.mean([o.ret - o.call for o in reads])) if reads else np.nan,
            "write_latency": (float(np.mean([o.ret - o.call for o in writes]))
                              if writes else np.nan),
        })
    keep = ["run_id", "protocol", "seed", *CONTEXT, *varying_params(runs)]
    frame = runs[[c for c in dict.fromkeys(keep) if c in runs]].merge(pd.DataFrame(rows),
                                                                     on="run_id")
    replicas = runs["network.nodes"] - runs["protocol.clients"]
    frame["overlap"] = (runs["protocol.r"] + runs["protocol.w"] - replicas).to_numpy()
    frame["r_plus_w"] = (runs["protocol.r"] + runs["protocol.w"]).to_numpy()
    return frame


def fig_stale(frame: pd.DataFrame, color: str | None = None) -> go.Figure:
    """Share of reads that were stale against R + W (mean over runs, 95 % bars)."""
    fig = fig_bars(frame, "r_plus_w", "stale_fraction", color,
                   "Stale reads against R + W", "share of completed reads")
    n = int((frame["network.nodes"] - frame["protocol.clients"]).iloc[0])
    fig.add_vline(x=n + 0.5, line_dash="dot", annotation_text=f"R + W > N = {n}")
    return fig


def fig_latency(frame: pd.DataFrame) -> go.Figure:
    """Mean read latency against R and write latency against W (95 % bars)."""
    fig = go.Figure()
    for i, (col, q, label) in enumerate((("read_latency", "protocol.r", "reads vs R"),
                                         ("write_latency", "protocol.w", "writes vs W"))):
        groups = frame.groupby("protocol.fanout") if "protocol.fanout" in frame else [("", frame)]
        for j, (fan, g) in enumerate(groups):
            s = summary(g, [q], [col]).sort_values(q)
            fig.add_trace(go.Scatter(
                x=s[q], y=s["mean"], mode="lines+markers",
                name=label + (", fanout=" + str(fan) if str(fan) else ""),
                line={"color": PALETTE[(2 * i + j) % len(PALETTE)]},
                error_y={"type": "data", "symmetric": False, "array": s["hi"] - s["mean"],
                         "arrayminus": s["mean"] - s["lo"]}))
    fig.update_layout(title="Operation latency against quorum size", template="plotly_white",
                      height=420, xaxis={"title": "quorum size (R or W)"},
                      yaxis={"title": "ticks (ms)"})
    return fig


def section(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The report's quorum-register section."""
    frame = quorum_runs(where, runs)
    if not len(frame):
        return []
    color = next((c for c in ("protocol.fanout", "protocol.read_repair")
                  if c in frame and frame[c].nunique() > 1), None)
    by = [c for c in ("overlap", color) if c]
    table = frame.groupby(by).agg(
        runs=("run_id", "size"), reads=("reads", "sum"), stale_reads=("stale_reads", "sum"),
        runs_not_linearizable=("linearizable", lambda s: int((s == 0).sum())),
    ).reset_index()
    return [
        Part("Quorum register: stale reads against R + W",
             "A read is stale when it returns a value that a later write, completed before "
             "the read began, had overwritten (stale_reads). With R + W > N (right of the "
             "dotted line) there are none; with R + W ≤ N there are, the more so the smaller "
             f"the quorums. Colour: {short(color) if color else 'all runs'}; overlap = "
             "R + W - N in the table.",
             fig_stale(frame, color), table=table, figure_id="fig-quorum-stale"),
        Part("Quorum register: latency against quorum size",
             "Waiting for more answers means waiting for a slower one: under delay variance "
             "the latency is an order statistic of the replicas' round trips.",
             fig_latency(frame), figure_id="fig-quorum-latency"),
    ]
