"""Analysis of the replication family: per-run log metrics, safety violations, figures.

Each protocol of :mod:`raysim.protocols.replication` (and ``gossip.rumor``) computes its
metrics and safety checks from the event log's columns (``log_metrics`` and ``safety``);
here they are run per run of a results directory, joined to the runs table, summarised over
seeds (mean and 95 % band, :mod:`raysim.analysis.stats`) and drawn with plotly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from raysim.analysis.figures import PALETTE, _rgba
from raysim.analysis.load import Where, load_events, load_runs, varying_params
from raysim.analysis.stats import summarize
from raysim.protocols import lookup

LOG_COLUMNS = ("time", "kind", "node", "peer", "msg_id", "name", "value")


def run_events(where: Where, runs: pd.DataFrame, kinds: Sequence[str] = ("obs",)
               ) -> dict[str, dict[str, np.ndarray]]:
    """Each run's log as numpy columns (rows of ``kinds`` only), by run id, in log order."""
    import pyarrow.dataset as ds

    frame = load_events(where, ["run_id", *LOG_COLUMNS], ds.field("kind").isin(list(kinds)),
                        runs=runs)
    out: dict[str, dict[str, np.ndarray]] = {}
    for rid, g in frame.groupby("run_id", sort=True):
        g = g.sort_values(["time", "node", "msg_id"], kind="stable")
        out[str(rid)] = {
            c: (g[c].astype(str).to_numpy() if c in ("kind", "name") else g[c].to_numpy())
            for c in LOG_COLUMNS
        }
    return out


def _params_of(runs: pd.DataFrame, i: int) -> tuple[Any, Any]:
    row = runs.iloc[i]
    cfg = json.loads(row["config"])
    spec = lookup(row["protocol"])
    return spec.cls, spec.make_params(cfg.get("protocol", {}))


def log_metrics(where: Where, runs: pd.DataFrame | None = None,
                kinds: Sequence[str] = ("obs",)) -> pd.DataFrame:
    """One row per run: the varying parameters, ``seed`` and the protocol's log metrics,
    plus ``violations`` and ``violations.<check>`` from its safety checks."""
    runs = load_runs(where) if runs is None else runs
    logs = run_events(where, runs, kinds)
    by = varying_params(runs)
    rows = []
    for i in range(len(runs)):
        cls, params = _params_of(runs, i)
        rid = runs.iloc[i]["run_id"]
        ev = logs.get(rid) or {c: np.array([], dtype=object if c in ("kind", "name") else float)
                               for c in LOG_COLUMNS}
        row = {c: runs.iloc[i][c] for c in by}
        row["run_id"], row["seed"] = rid, runs.iloc[i]["seed"]
        row.update(cls.log_metrics(params, ev, int(runs.iloc[i]["network.nodes"])))
        viol = list(cls.safety(params, ev))
        row["violations"] = len(viol)
        for check in cls.checks:
            row[f"violations.{check}"] = sum(v.check == check for v in viol)
        rows.append(row)
    return pd.DataFrame(rows)


def violations(where: Where, runs: pd.DataFrame | None = None, first: int = 5,
               kinds: Sequence[str] = ("obs",)) -> pd.DataFrame:
    """The first ``first`` violations of each run: run_id, check, time, node, peer, detail."""
    runs = load_runs(where) if runs is None else runs
    logs = run_events(where, runs, kinds)
    rows = []
    for i in range(len(runs)):
        cls, params = _params_of(runs, i)
        rid = runs.iloc[i]["run_id"]
        if rid not in logs:
            continue
        viol = sorted(cls.safety(params, logs[rid]), key=lambda v: (v.time, v.node))[:first]
        rows += [{"run_id": rid, **v._asdict()} for v in viol]
    return pd.DataFrame(rows, columns=["run_id", "check", "time", "node", "detail", "peer"])


# --- retry-with-ack ------------------------------------------------------------------------


def effective_loss(runs: pd.DataFrame) -> pd.Series:
    """Per run, the chance a copy never reaches the protocol: loss, then corruption."""
    corrupt = runs.get("faults.corrupt", 0.0)
    return 1.0 - (1.0 - runs["faults.loss"]) * (1.0 - corrupt)


def tx_theory(p: Any) -> Any:
    """Expected transmissions per message with per-message acks, loss p on data and acks:
    a transmission is answered with probability (1-p)², so the count is geometric with
    mean 1/(1-p)²."""
    return 1.0 / (1.0 - np.asarray(p, dtype=float)) ** 2


def policy(frame: pd.DataFrame) -> pd.Series:
    """A label per row for the timeout policy: ``fixed``, ``backoff``, ``backoff+jitter``…"""
    t = frame["protocol.timeout"].astype(str) if "protocol.timeout" in frame else "adaptive"
    j = frame.get("protocol.jitter", 0.0)
    return pd.Series(t + np.where(np.asarray(j, dtype=float) > 0, "+jitter", ""),
                     index=frame.index)


def band(fig: go.Figure, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str,
         group: str) -> None:
    """A shaded 95 % band between ``lo`` and ``hi`` (NaNs dropped)."""
    ok = ~(np.isnan(lo) | np.isnan(hi))
    x, lo, hi = x[ok], lo[ok], hi[ok]
    fig.add_trace(go.Scatter(
        x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
        fillcolor=_rgba(color, 0.18), line={"width": 0}, hoverinfo="skip", showlegend=False,
        legendgroup=group))


def fig_lines(summary: pd.DataFrame, x: str, metric: str, by: str, title: str,
              ytitle: str, theory: tuple[np.ndarray, np.ndarray] | None = None,
              theory_name: str = "theory", log_y: bool = False) -> go.Figure:
    """Mean lines with 95 % bands of ``metric`` against ``x``, one line per value of ``by``."""
    fig = go.Figure()
    s = summary[summary["metric"] == metric]
    for i, (key, g) in enumerate(s.groupby(by, sort=True)):
        g = g.sort_values(x)
        color = PALETTE[i % len(PALETTE)]
        xs = g[x].to_numpy(dtype=float)
        band(fig, xs, g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float), color,
             str(key))
        fig.add_trace(go.Scatter(x=xs, y=g["mean"], mode="lines+markers", name=str(key),
                                 legendgroup=str(key), line={"color": color}))
    if theory is not None:
        fig.add_trace(go.Scatter(x=theory[0], y=theory[1], mode="lines", name=theory_name,
                                 line={"color": "#222", "dash": "dot"}))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=ytitle, template="plotly_white")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def retry_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % band over seeds per loss, policy and ack mode."""
    m = metrics.copy()
    m["policy"] = policy(m)
    by = [c for c in ("faults.loss", "policy", "protocol.ack") if c in m]
    values = [c for c in ("delivered_ratio", "applied_twice", "out_of_order_applied",
                          "tx_per_message", "tx_per_delivered", "duplicates_per_message",
                          "latency_p50", "latency_p99", "completion_time") if c in m]
    return summarize(m, by, values)


def fig_retry(summary: pd.DataFrame, metric: str = "tx_per_message", ack: str = "each",
              title: str | None = None) -> go.Figure:
    """``metric`` against loss, one line per timeout policy, for one ack mode; the
    1/(1-p)² line on transmission counts."""
    s = summary[summary["protocol.ack"] == ack] if "protocol.ack" in summary else summary
    theory = None
    if metric.startswith("tx_"):
        p = np.linspace(0.0, float(s["faults.loss"].max()), 50)
        theory = (p, tx_theory(p))
    names = {"tx_per_message": "transmissions per message", "latency_p50": "median latency",
             "latency_p99": "99th percentile latency"}
    return fig_lines(s, "faults.loss", metric, "policy",
                     title or f"{names.get(metric, metric)} against loss ({ack} acks)",
                     names.get(metric, metric), theory, "1/(1-p)²",
                     log_y=metric.startswith("latency"))


