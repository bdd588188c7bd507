"""Plotly figures for Chord: hops against N, hop distribution, failures, traffic, key load.

Each builder takes a frame of :mod:`raysim.analysis.chord` and returns a
``plotly.graph_objects.Figure``; parameters other than the x axis become one line each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from raysim.analysis.figures import PALETTE, label, log_ticks

_SUMMARY_STATS = {"runs", "lookups", "hops_mean", "hops_p1", "hops_p50", "hops_p99",
                  "timeouts_mean", "latency_mean", "failed", "failed_lo", "failed_hi", "wrong",
                  "gave_up", "lost", "lost_lo", "lost_hi"}
NAMES = {"network.nodes": "nodes N", "fail_fraction": "fraction p of nodes failed at once",
         "churn_rate": "churn rate R (joins and departures per second, each)"}


def _lines(frame: pd.DataFrame, x: str | None, stats: set[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows sorted by x) per combination of the columns that are neither x nor stats."""
    keys = [c for c in frame.columns if c not in stats and c != x]
    if not keys:
        return [("all runs", frame.sort_values(x) if x else frame)]
    out = []
    for key, g in frame.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((label(dict(zip(keys, key, strict=True))), g.sort_values(x) if x else g))
    return out


def fig_hops_vs_n(summary: pd.DataFrame, title: str = "Lookup path length against N"
                  ) -> go.Figure:
    """Mean hops against N (log₂ axis), a band from the 1st to the 99th percentile, and the
    ½·log₂N line of Stoica et al."""
    x = "network.nodes"
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=440,
                      xaxis={"title": "nodes N", **log_ticks(summary.get(x, []))},
                      yaxis_title="hops")
    for k, (name, d) in enumerate(_lines(summary, x, _SUMMARY_STATS)):
        color = PALETTE[k % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=d[x], y=d["hops_mean"], name=f"mean ({name})", mode="lines+markers",
            line={"color": color},
            error_y={"type": "data", "symmetric": False, "array": d["hops_p99"] - d["hops_mean"],
                     "arrayminus": d["hops_mean"] - d["hops_p1"]},
            hovertemplate="N %{x}<br>mean %{y:.2f} hops<extra></extra>"))
    ns = np.sort(summary[x].unique()) if x in summary else np.array([])
    if len(ns):
        fig.add_trace(go.Scatter(x=ns, y=0.5 * np.log2(ns), name="½·log₂N", mode="lines",
                                 line={"color": "black", "dash": "dash", "width": 1}))
    fig.add_annotation(text="bars: 1st to 99th percentile", showarrow=False, xref="paper",
                       yref="paper", x=0.01, y=0.99, font={"size": 11, "color": "#555"})
    return fig


def fig_hop_distribution(dist: pd.DataFrame, title: str = "Path length distribution"
                         ) -> go.Figure:
    """Share of lookups per hop count (a bar group per combination)."""
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=400, barmode="group",
                      xaxis_title="hops", yaxis_title="share of lookups")
    cap = _hop_cap(dist)
    if cap is not None:  # a few long paths: fold them into a last "≥ cap" bar
        dist = dist.assign(hops=dist["hops"].clip(upper=cap))
        keys = [c for c in dist.columns if c not in ("count", "share")]
        dist = dist.groupby(keys, dropna=False, sort=True)[["count", "share"]].sum().reset_index()
    for k, (name, d) in enumerate(_lines(dist, "hops", {"hops", "count", "share"})):
        fig.add_trace(go.Bar(x=d["hops"], y=d["share"], name=name,
                             marker_color=PALETTE[k % len(PALETTE)]))
    if len(dist):
        hops = list(range(int(dist["hops"].min()), int(dist["hops"].max()) + 1))
        text = [str(h) for h in hops]
        if cap is not None:
            text[-1] = f"≥ {cap}"
        fig.update_xaxes(tickmode="array", tickvals=hops, ticktext=text)
    return fig


def _hop_cap(dist: pd.DataFrame, quantile: float = 0.995) -> int | None:
    """The hop count below which ``quantile`` of all lookups fall, if longer ones exist."""
    if not len(dist):
        return None
    by_hops = dist.groupby("hops")["count"].sum().sort_index()
    cum = by_hops.cumsum() / by_hops.sum()
    cap = int(cum.index[int(np.searchsorted(cum.to_numpy(), quantile))])
    return cap + 1 if by_hops.index.max() > cap + 1 else None


def fig_failures(summaries: dict[str, pd.DataFrame], x: str,
                 title: str = "Failed lookups", paper: pd.DataFrame | None = None,
                 paper_label: str = "paper") -> go.Figure:
    """Share of failed lookups (mean over runs, 95 % interval) against ``x``, one line per
    named summary (e.g. "right after the failure", "after stabilization"); ``paper`` (rows
    ``x``, ``failed``) is drawn as black markers named ``paper_label``."""
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=420,
                      xaxis_title=NAMES.get(x, x), yaxis_title="share of lookups failed")
    k = 0
    for which, summary in summaries.items():
        for name, d in _lines(summary, x, _SUMMARY_STATS):
            color = PALETTE[k % len(PALETTE)]
            k += 1
            tag = which if name == "all runs" else f"{which}, {name}"
            fig.add_trace(go.Scatter(
                x=d[x], y=d["failed"], name=tag, mode="lines+markers", line={"color": color},
                error_y={"type": "data", "symmetric": False,
                         "array": d["failed_hi"] - d["failed"],
                         "arrayminus": d["failed"] - d["failed_lo"]},
                customdata=np.stack([d["wrong"], d["gave_up"]], axis=-1),
                hovertemplate="%{x}: failed %{y:.4f}<br>wrong node %{customdata[0]:.4f}"
                              "<br>gave up %{customdata[1]:.4f}<extra></extra>"))
    if paper is not None and len(paper):
        fig.add_trace(go.Scatter(x=paper[x], y=paper["failed"], name=paper_label,
                                 mode="lines+markers",
                                 line={"color": "black", "dash": "dot", "width": 1},
                                 marker={"symbol": "diamond-open", "size": 9, "color": "black"}))
        fig.update_layout(legend={"orientation": "h", "y": -0.25})
    if x == "fail_fraction":
        xs = sorted({v for s in summaries.values() if x in s for v in s[x]})
        fig.add_trace(go.Scatter(x=xs, y=xs, name="y = p (keys lost without replication)",
                                 mode="lines", line={"color": "gray", "dash": "dot",
                                                     "width": 1}))
    return fig


def fig_key_loss(summaries: dict[str, pd.DataFrame], x: str = "fail_fraction",
                 title: str = "Routing failures and lost keys against p") -> go.Figure:
    """Two metrics per named summary against ``x``: the share of lookups that failed to
    route (gave up or ended at a wrong node; solid) and the share whose key's data is gone
    (every holder failed; dashed) — the latter is the Chord paper's failed lookup (Fig. 11).
    Each summary is a :func:`raysim.analysis.chord.lookup_summary` table; bars: 95 % interval
    over runs. Gray dotted: y = p."""
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=440,
                      xaxis_title=NAMES.get(x, x), yaxis_title="share of lookups")
    k = 0
    for which, summary in summaries.items():
        for name, d in _lines(summary, x, _SUMMARY_STATS):
            color = PALETTE[k % len(PALETTE)]
            k += 1
            tag = which if name == "all runs" else f"{which}, {name}"
            for col, what, dash in (("failed", "routing failed", "solid"),
                                    ("lost", "key lost", "dash")):
                fig.add_trace(go.Scatter(
                    x=d[x], y=d[col], name=f"{what} ({tag})", mode="lines+markers",
                    line={"color": color, "dash": dash},
                    error_y={"type": "data", "symmetric": False,
                             "array": d[f"{col}_hi"] - d[col],
                             "arrayminus": d[col] - d[f"{col}_lo"]}))
    xs = sorted({v for s in summaries.values() if x in s for v in s[x]})
    fig.add_trace(go.Scatter(x=xs, y=xs, name="y = p", mode="lines",
                             line={"color": "gray", "dash": "dot", "width": 1}))
    return fig


def fig_hops_vs(summary: pd.DataFrame, x: str, title: str = "Hops and timeouts per lookup"
                ) -> go.Figure:
    """Mean hops (1st-99th percentile bars) and mean timeouts per lookup against ``x``."""
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=420,
                      xaxis_title=NAMES.get(x, x), yaxis_title="per lookup")
    for k, (name, d) in enumerate(_lines(summary, x, _SUMMARY_STATS)):
        color = PALETTE[k % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=d[x], y=d["hops_mean"], name=f"hops ({name})", mode="lines+markers",
            line={"color": color},
            error_y={"type": "data", "symmetric": False, "array": d["hops_p99"] - d["hops_mean"],
                     "arrayminus": d["hops_mean"] - d["hops_p1"]}))
        fig.add_trace(go.Scatter(x=d[x], y=d["timeouts_mean"], name=f"timeouts ({name})",
                                 mode="lines+markers", line={"color": color, "dash": "dot"}))
    return fig


def fig_maintenance(summary: pd.DataFrame, x: str,
                    title: str = "Messages per live node per second") -> go.Figure:
    """Traffic per node per second by kind against ``x`` (mean, 95 % interval)."""
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=440,
                      xaxis_title=NAMES.get(x, x), yaxis_title="messages / node / s")
    stats = {"traffic", "mean", "lo", "hi", "n"}
    for k, (traffic, g) in enumerate(summary.groupby("traffic", sort=False)):
        for name, d in _lines(g, x, stats):
            tag = str(traffic) if name == "all runs" else f"{traffic} ({name})"
            fig.add_trace(go.Scatter(
                x=d[x], y=d["mean"], name=tag, mode="lines+markers",
                line={"color": PALETTE[k % len(PALETTE)]},
                error_y={"type": "data", "symmetric": False, "array": d["hi"] - d["mean"],
                         "arrayminus": d["mean"] - d["lo"]}))
    return fig


def fig_key_load(load: pd.DataFrame, percentiles: Sequence[str] = ("p1", "p50", "p99", "max"),
                 title: str = "Keys per node against virtual nodes per node") -> go.Figure:
    """Percentiles of keys per physical node, relative to the mean, against virtual nodes
    (mean over replicates)."""
    agg = load.groupby("vnodes", sort=True)[[*percentiles, "mean"]].mean()
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=420,
                      xaxis={"title": "virtual nodes per physical node",
                             **log_ticks(agg.index.to_numpy())},
                      yaxis_title="keys per node / mean")
    for k, p in enumerate(percentiles):
        fig.add_trace(go.Scatter(x=agg.index, y=agg[p] / agg["mean"], name=p,
                                 mode="lines+markers", line={"color": PALETTE[k % len(PALETTE)]}))
    fig.add_hline(y=1.0, line={"color": "gray", "dash": "dot", "width": 1})
    return fig


__all__ = ["fig_failures", "fig_hop_distribution", "fig_hops_vs", "fig_hops_vs_n",
           "fig_key_load", "fig_maintenance"]
