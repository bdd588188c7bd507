"""Plotly figure builders for convergence curves, milestones, messages and variance.

Each builder takes the tidy frames of :mod:`raysim.analysis.gossip` /
:mod:`raysim.analysis.averaging` and returns a ``plotly.graph_objects.Figure``. Parameter
combinations are laid out by :func:`roles`: ``network.nodes`` is the colour,
``protocol.mode`` the column of subplots, ``faults.loss`` the row (when they vary; other
varying parameters take the free roles, and any left over join the colour's label).
Means are lines, 95 % bands are shaded, theory is dotted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

PALETTE = qualitative.Plotly
STATS = ("round", "mean", "lo", "hi", "n", "metric", "theory", "fraction", "pittel")


def short(col: str) -> str:
    """``faults.loss`` → ``loss``."""
    return col.rsplit(".", 1)[-1]


def label(values: dict[str, Any]) -> str:
    """``{"faults.loss": 0.1, "network.nodes": 100}`` → ``loss=0.1, nodes=100``."""
    return ", ".join(f"{short(k)}={v}" for k, v in values.items()) or "all runs"


def roles(by: Sequence[str]) -> tuple[list[str], str | None, str | None]:
    """Split varying parameters into (colour columns, facet column, facet row)."""
    rest = list(by)

    def take(preferred: str) -> str | None:
        if preferred in rest:
            rest.remove(preferred)
            return preferred
        return None

    color = take("network.nodes")
    col = take("protocol.mode")
    row = take("faults.loss")
    if color is None and rest:
        color = rest.pop(0)
    if col is None and rest:
        col = rest.pop(0)
    if row is None and rest:
        row = rest.pop(0)
    return ([color] if color else []) + rest, col, row


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def tick_label(v: float) -> str:
    """A short tick label for a count: ``1000``, ``10k``, ``2.5M``, and ``2¹⁶`` for powers
    of two from 2¹⁰ that are not round decimals."""
    if v >= 1024 and float(v).is_integer() and int(v) & (int(v) - 1) == 0:
        return "2" + str(int(v).bit_length() - 1).translate(_SUPERSCRIPT)
    for scale, suffix in ((1e6, "M"), (1e4, "k")):
        if v >= scale:
            unit = 1e3 if suffix == "k" else scale
            return f"{v / unit:g}{suffix}"
    return f"{v:g}"


def log_ticks(values: Sequence[float] | np.ndarray | pd.Series) -> dict[str, Any]:
    """Axis settings for a log axis over ``values``: a labelled tick at each value (no
    minor-tick digits like the "2" and "5" plotly writes between decades, which collide
    with their neighbours); with more than 16 values, decades only."""
    vals = sorted({float(v) for v in values if v is not None and float(v) > 0})
    if not vals or len(vals) > 16:
        return {"type": "log", "dtick": 1, "exponentformat": "power"}
    return {"type": "log", "tickmode": "array", "tickvals": vals,
            "ticktext": [tick_label(v) for v in vals]}


def legend_below(fig: go.Figure, base_height: int, per_row: int = 3) -> None:
    """Put the legend under the plot, in rows, and make room for all of it.

    NOTE: a legend beside the plot scrolls (hiding entries) once it is taller than the plot.
    """
    entries = sum(1 for t in fig.data if t.showlegend is not False and t.name)
    rows = -(-entries // per_row)
    fig.update_layout(height=base_height + 24 * rows,
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22,
                              "xanchor": "left", "x": 0, "entrywidth": 1.0 / per_row - 0.01,
                              "entrywidthmode": "fraction"},
                      margin={"b": 40 + 24 * rows})


def _rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _values(frame: pd.DataFrame, col: str | None) -> list[Any]:
    return sorted(frame[col].dropna().unique().tolist()) if col else [None]


def _select(frame: pd.DataFrame, conds: Mapping[Any, Any]) -> pd.DataFrame:
    for c, v in conds.items():
        if c is not None:
            frame = frame[frame[c] == v]
    return frame


def _grid(
    frame: pd.DataFrame, col: str | None, row: str | None, title: str
) -> tuple[go.Figure, list[Any], list[Any]]:
    cols, rows = _values(frame, col), _values(frame, row)
    titles = [label({k: v for k, v in ((row, r), (col, c)) if k}) for r in rows for c in cols]
    fig = make_subplots(rows=len(rows), cols=len(cols), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=titles if (col or row) else None,
                        horizontal_spacing=0.04, vertical_spacing=0.08)
    fig.update_layout(title=title, template="plotly_white", height=max(360, 260 * len(rows)),
                      legend={"title": {"text": ""}})
    return fig, cols, rows


def _band(fig: go.Figure, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str,
          group: str, r: int, c: int) -> None:
    fig.add_trace(go.Scatter(
        x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
        fillcolor=_rgba(color, 0.18), line={"width": 0}, hoverinfo="skip", showlegend=False,
        legendgroup=group), row=r, col=c)


def fig_convergence(curves: pd.DataFrame, theory: pd.DataFrame | None = None,
                    title: str = "Fraction of nodes informed") -> go.Figure:
    """Informed fraction against round: mean line and 95 % band per combination, theory dotted."""
    by = [c for c in curves.columns if c not in STATS]
    colors, col, row = roles(by)
    fig, cols, rows = _grid(curves, col, row, title)
    keys = curves[colors].drop_duplicates().sort_values(colors) if colors else pd.DataFrame([{}])
    legend_done: set[str] = set()
    for ri, rv in enumerate(rows, 1):
        for ci, cv in enumerate(cols, 1):
            cell = _select(curves, {col: cv, row: rv})
            for k, (_, key) in enumerate(keys.iterrows()):
                kv = {c: key[c] for c in colors}
                name, color = label(kv), PALETTE[k % len(PALETTE)]
                d = _select(cell, kv)
                if not len(d):
                    continue
                x = d["round"].to_numpy()
                _band(fig, x, d["lo"].to_numpy(), d["hi"].to_numpy(), color, name, ri, ci)
                fig.add_trace(go.Scatter(
                    x=x, y=d["mean"], name=name, legendgroup=name, line={"color": color},
                    showlegend=name not in legend_done, customdata=d["n"],
                    hovertemplate=f"{name}<br>round %{{x}}<br>informed %{{y:.3f}}"
                                  "<br>runs %{customdata}<extra></extra>"), row=ri, col=ci)
                legend_done.add(name)
                if theory is not None and len(theory):
                    t = _select(_select(theory, {col: cv, row: rv}), kv)
                    if len(t):
                        fig.add_trace(go.Scatter(
                            x=t["round"], y=t["fraction"], mode="lines+markers",
                            name="theory (mean-field)", legendgroup="theory",
                            showlegend="theory" not in legend_done,
                            line={"color": color, "dash": "dot", "width": 1},
                            marker={"size": 4}, opacity=0.8), row=ri, col=ci)
                        legend_done.add("theory")
    fig.update_xaxes(title_text="round", row=len(rows))
    fig.update_yaxes(title_text="fraction informed", range=[0, 1.02], col=1)
    return fig


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _lines_by(frame: pd.DataFrame, x: str | None) -> list[str]:
    cols = [c for c in frame.columns if c not in STATS and c != x]
    return sorted(cols, key=lambda c: c != "protocol.mode")  # the mode first: it gets colours


def _styles(keys: pd.DataFrame) -> list[tuple[str, str]]:
    """(colour, dash) per line: colour by the first key column, dash by the second."""
    cols = list(keys.columns)
    if len(cols) < 2:
        return [(PALETTE[i % len(PALETTE)], "solid") for i in range(len(keys))]
    first = {v: i for i, v in enumerate(dict.fromkeys(keys[cols[0]]))}
    second = {v: i for i, v in enumerate(dict.fromkeys(keys[cols[1]]))}
    return [(PALETTE[first[a] % len(PALETTE)], DASHES[second[b] % len(DASHES)])
            for a, b in zip(keys[cols[0]], keys[cols[1]], strict=True)]


def fig_milestones(summary: pd.DataFrame, theory: pd.DataFrame | None = None,
                   title: str = "Rounds until 50 %, 99 % and 100 % of nodes know") -> go.Figure:
    """Rounds to each milestone against N (log axis): mean ± 95 % band, theory dashed."""
    data = summary[summary["metric"].str.startswith("rounds_to_")]
    metrics = list(dict.fromkeys(data["metric"]))
    x = "network.nodes" if "network.nodes" in data.columns else None
    lines = _lines_by(data, x)
    fig = make_subplots(rows=1, cols=max(1, len(metrics)), shared_yaxes=False,
                        subplot_titles=[m.replace("rounds_to_", "") + " %" for m in metrics])
    fig.update_layout(title=title, template="plotly_white", height=420)
    keys = data[lines].drop_duplicates().sort_values(lines) if lines else pd.DataFrame([{}])
    styles = _styles(keys)
    shown: set[str] = set()
    for mi, metric in enumerate(metrics, 1):
        for k, (_, key) in enumerate(keys.iterrows()):
            kv = {c: key[c] for c in lines}
            name, (color, dash) = label(kv), styles[k]
            d = _select(data[data["metric"] == metric], kv)
            d = d.sort_values(x) if x else d
            xs = d[x] if x else np.zeros(len(d))
            fig.add_trace(go.Scatter(
                x=xs, y=d["mean"], name=name, legendgroup=name, mode="lines+markers",
                showlegend=name not in shown, line={"color": color, "dash": dash},
                error_y={"type": "data", "symmetric": False, "array": d["hi"] - d["mean"],
                         "arrayminus": d["mean"] - d["lo"]}), row=1, col=mi)
            shown.add(name)
            if theory is not None and len(theory):
                t = _select(theory[theory["metric"] == metric], kv)
                t = t.sort_values(x) if x else t
                if len(t):
                    fig.add_trace(go.Scatter(
                        x=t[x] if x else np.zeros(len(t)), y=t["theory"], mode="lines",
                        name="theory (mean-field): thin lines", legendgroup="theory",
                        showlegend="theory" not in shown, opacity=0.6,
                        line={"color": color, "dash": dash, "width": 1}), row=1, col=mi)
                    shown.add("theory")
                    p = t.dropna(subset=["pittel"])
                    if len(p):
                        fig.add_trace(go.Scatter(
                            x=p[x] if x else np.zeros(len(p)), y=p["pittel"], mode="lines",
                            name="push: log₂N + ln N (Pittel 1987)", legendgroup="pittel",
                            showlegend="pittel" not in shown,
                            line={"color": "black", "dash": "dashdot", "width": 1}),
                            row=1, col=mi)
                        shown.add("pittel")
    if x:
        fig.update_xaxes(title_text="nodes N", **log_ticks(data[x]))
    fig.update_yaxes(title_text="rounds", col=1)
    legend_below(fig, 440)
    return fig


def fig_messages(summary: pd.DataFrame, title: str = "Messages sent per node") -> go.Figure:
    """Messages per node against N: mean ± 95 % band per combination."""
    data = summary[summary["metric"] == "messages_per_node"]
    x = "network.nodes" if "network.nodes" in data.columns else None
    lines = _lines_by(data, x)
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=400,
                      yaxis_title="messages per node", xaxis_title="nodes N" if x else "")
    keys = data[lines].drop_duplicates().sort_values(lines) if lines else pd.DataFrame([{}])
    styles = _styles(keys)
    for k, (_, key) in enumerate(keys.iterrows()):
        kv = {c: key[c] for c in lines}
        d = _select(data, kv)
        d = d.sort_values(x) if x else d
        fig.add_trace(go.Scatter(
            x=d[x] if x else np.zeros(len(d)), y=d["mean"], name=label(kv), mode="lines+markers",
            line={"color": styles[k][0], "dash": styles[k][1]},
            error_y={"type": "data", "symmetric": False, "array": d["hi"] - d["mean"],
                     "arrayminus": d["mean"] - d["lo"]}))
    if x:
        fig.update_xaxes(**log_ticks(data[x]))
    return fig


def fig_variance(
    summary: pd.DataFrame, title: str = "Variance of node values per round (push-pull averaging)"
) -> go.Figure:
    """Variance against round (log axis): mean and 95 % band, theory (1/(2√e))^round dotted."""
    lines = [c for c in summary.columns if c not in STATS]
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=420,
                      xaxis_title="round", yaxis_title="variance", yaxis_type="log")
    keys = summary[lines].drop_duplicates().sort_values(lines) if lines else pd.DataFrame([{}])
    for k, (_, key) in enumerate(keys.iterrows()):
        kv = {c: key[c] for c in lines}
        name, color = label(kv), PALETTE[k % len(PALETTE)]
        d = _select(summary, kv).sort_values("round")
        x = d["round"].to_numpy()
        floor = np.maximum(d["lo"].to_numpy(), d["mean"].to_numpy() * 1e-3)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([d["hi"].to_numpy(), floor[::-1]]),
                                 fill="toself", fillcolor=_rgba(color, 0.18), line={"width": 0},
                                 hoverinfo="skip", showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=d["mean"], name=name, legendgroup=name,
                                 line={"color": color}))
        fig.add_trace(go.Scatter(x=x, y=d["theory"], name="theory: × 1/(2√e) per round",
                                 legendgroup="theory", showlegend=k == 0,
                                 line={"color": color, "dash": "dot", "width": 1}))
    return fig
