"""Analysis of the replication family: per-run log metrics, safety violations, figures.

Each protocol of :mod:`raysim.protocols.replication` (and ``gossip.rumor``) computes its
metrics and safety checks from the event log's columns (``log_metrics`` and ``safety``);
here they are run per run of a results directory, joined to the runs table, summarised over
seeds (mean and 95 % band, :mod:`raysim.analysis.stats`) and drawn with plotly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from raysim.analysis.figures import PALETTE, _rgba
from raysim.analysis.load import Where, load_events, load_runs, param_columns, varying_params
from raysim.analysis.stats import summarize
from raysim.protocols import lookup

LOG_COLUMNS = ("time", "kind", "node", "peer", "msg_id", "name", "value")


def run_events(where: Where, runs: pd.DataFrame, kinds: Sequence[str] = ("obs",)
               ) -> dict[str, dict[str, np.ndarray]]:
    """Each run's log as numpy columns (rows of ``kinds`` only), by run id, in log order."""
    import pyarrow.dataset as ds

    from raysim.log.schema import EVENT_SCHEMA

    # NOTE: a node's events of one tick keep their program order only through ``seq``
    # (where the schema has it); without it the file order is the order.
    order = [c for c in ("seq",) if c in EVENT_SCHEMA.names]
    frame = load_events(where, ["run_id", *LOG_COLUMNS, *order],
                        ds.field("kind").isin(list(kinds)), runs=runs)
    out: dict[str, dict[str, np.ndarray]] = {}
    for rid, g in frame.groupby("run_id", sort=True):
        g = g.sort_values(["time", "node", *order] if order else ["time"], kind="stable")
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


def _param_cols(runs: pd.DataFrame) -> list[str]:
    """Protocol, network and loss parameters, and whatever else varies."""
    keep = [c for c in param_columns(runs)
            if c.startswith(("protocol.", "network.")) or c == "faults.loss"]
    return list(dict.fromkeys([*keep, *varying_params(runs)]))


def log_metrics(where: Where, runs: pd.DataFrame | None = None,
                kinds: Sequence[str] = ("obs",)) -> pd.DataFrame:
    """One row per run: the varying parameters, ``seed`` and the protocol's log metrics,
    plus ``violations`` and ``violations.<check>`` from its safety checks."""
    runs = load_runs(where) if runs is None else runs
    logs = run_events(where, runs, kinds)
    by = _param_cols(runs)
    rows = []
    for i in range(len(runs)):
        cls, params = _params_of(runs, i)
        rid = runs.iloc[i]["run_id"]
        ev = logs.get(rid) or {c: np.array([], dtype=object if c in ("kind", "name") else float)
                               for c in LOG_COLUMNS}
        row = {c: runs.iloc[i][c] for c in by}
        row["run_id"], row["seed"] = rid, runs.iloc[i]["seed"]
        for k, v in params.model_dump().items():  # presets included
            row.setdefault(f"protocol.{k}", v)
        row.update(cls.log_metrics(params, ev, int(runs.iloc[i]["network.nodes"])))
        viol = list(cls.safety(params, ev))
        row["violations"] = len(viol)
        for check in cls.checks:
            row[f"violations.{check}"] = sum(v.check == check for v in viol)
        rows.append(row)
    return pd.DataFrame(rows)


def violations(where: Where, runs: pd.DataFrame | None = None, first: int = 5,
               kinds: Sequence[str] = ("obs",)) -> pd.DataFrame:
    """The first ``first`` violations of each run: run_id, check, time, nodes, detail."""
    runs = load_runs(where) if runs is None else runs
    logs = run_events(where, runs, kinds)
    rows = []
    for i in range(len(runs)):
        cls, params = _params_of(runs, i)
        rid = runs.iloc[i]["run_id"]
        if rid not in logs:
            continue
        viol = sorted(cls.safety(params, logs[rid]), key=lambda v: (v.time, v.nodes))[:first]
        rows += [{"run_id": rid, "check": v.check, "time": v.time,
                  "nodes": ", ".join(map(str, v.nodes)), "detail": v.detail} for v in viol]
    return pd.DataFrame(rows, columns=["run_id", "check", "time", "nodes", "detail"])


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




def fig_spurious(metrics: pd.DataFrame) -> go.Figure:
    """Spurious retransmissions (duplicates per message, no loss) against the log-normal
    delay's sigma, one line per timeout policy and first timeout."""
    m = metrics.copy()
    m["sigma"] = m["network.delay.sigma"]
    m["policy"] = m["protocol.timeout"].astype(str) + " rto=" + m["protocol.rto"].astype(str)
    s = summarize(m, ["sigma", "policy"], ["duplicates_per_message", "tx_per_message"])
    return fig_lines(s, "sigma", "duplicates_per_message", "policy",
                     "Spurious retransmissions against delay spread (no loss)",
                     "duplicate copies per message")


# --- anti-entropy ---------------------------------------------------------------------------


def _last_before(times: np.ndarray, values: np.ndarray, grid: np.ndarray, fill: float
                 ) -> np.ndarray:
    i = np.searchsorted(times, grid, side="right") - 1
    return np.where(i >= 0, values[np.maximum(i, 0)], fill)


def divergence_curves(where: Where, runs: pd.DataFrame | None = None, step: int = 250
                      ) -> pd.DataFrame:
    """Per run and time (every ``step`` ticks): ``current`` (share of replicas that include
    every write so far), ``distinct`` (distinct states), ``staleness`` (writes so far a
    random replica does not see yet), from the ``write``, ``known`` and ``state`` rows."""
    runs = load_runs(where) if runs is None else runs
    logs = run_events(where, runs)
    by = varying_params(runs)
    out = []
    for i in range(len(runs)):
        row = runs.iloc[i]
        ev = logs.get(row["run_id"])
        if ev is None:
            continue
        end = int(row["end_time"])
        grid = np.arange(0, end + 1, step)
        name, t, node, v = ev["name"], ev["time"], ev["node"], ev["value"]
        w = np.sort(t[name == "write"])
        total = np.searchsorted(w, grid, side="right")
        n = int(row["network.nodes"])
        known = np.zeros((n, len(grid)))
        state = np.zeros((n, len(grid)))
        for nd in range(n):
            mk, ms = (name == "known") & (node == nd), (name == "state") & (node == nd)
            known[nd] = _last_before(t[mk], v[mk], grid, 0.0)
            state[nd] = _last_before(t[ms], v[ms], grid, -1.0)
        distinct = np.array([len(np.unique(state[:, j])) for j in range(len(grid))])
        frame = pd.DataFrame({"time": grid, "current": (known == total).mean(axis=0),
                              "distinct": distinct, "staleness": (total - known).mean(axis=0)})
        for c in by:
            frame[c] = row[c]
        frame["run_id"] = row["run_id"]
        out.append(frame)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def fig_over_time(curves: pd.DataFrame, metric: str, by: str, title: str, ytitle: str,
                  shade: tuple[float, float] | None = None) -> go.Figure:
    """``metric`` over time (seconds), mean and 95 % band over seeds, one line per ``by``."""
    s = summarize(curves, ["time", by], [metric])
    s["time"] = s["time"] / 1000.0
    fig = fig_lines(s, "time", metric, by, title, ytitle)
    if shade is not None:
        fig.add_vrect(x0=shade[0] / 1000, x1=shade[1] / 1000, fillcolor="#999", opacity=0.15,
                      line_width=0, annotation_text="partition")
    fig.update_xaxes(title="time (s)")
    return fig


def ae_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % band over seeds of the anti-entropy metrics per varying parameter."""
    by = [c for c in metrics.columns if c.startswith(("protocol.", "faults.", "network."))
          and metrics[c].nunique() > 1]
    values = ["converged", "matches_spec", "convergence_time", "distinct_final",
              "bytes_per_exchange", "violations"]
    return summarize(metrics, by, [v for v in values if v in metrics])


def fig_bytes(summary: pd.DataFrame) -> go.Figure:
    """Bytes per exchange by CRDT and exchange mode (full state against digests)."""
    s = summary[summary["metric"] == "bytes_per_exchange"]
    fig = go.Figure()
    for i, (mode, g) in enumerate(s.groupby("protocol.mode", sort=True)):
        fig.add_trace(go.Bar(x=g["protocol.crdt"], y=g["mean"], name=str(mode),
                             marker_color=PALETTE[i % len(PALETTE)],
                             error_y={"type": "data", "array": g["hi"] - g["mean"]}))
    fig.update_layout(title="Bytes per exchange: full state against version-vector digests",
                      barmode="group", yaxis_title="bytes", template="plotly_white")
    return fig


# --- rumor mongering ------------------------------------------------------------------------

# Demers et al. 1987, Table 1 (push, feedback, counter) and Table 2 (push, blind, coin), n =
# 1000 (k: residue, traffic, t_ave, t_last), as data beside the experiment files (checked
# against the paper's extended version, CSL-89-1; see the file's header).
PAPER_CSV = Path(__file__).resolve().parents[2] / "experiments" / "demers1987_tables.csv"


@functools.cache
def paper_tables(path: Path = PAPER_CSV) -> dict[str, pd.DataFrame]:
    """The paper's tables by variant name (``push/feedback/counter``: Table 1,
    ``push/blind/coin``: Table 2), columns k, residue, traffic, t_ave, t_last."""
    t = pd.read_csv(path, comment="#")
    return {str(v): g.drop(columns=["table", "variant"]).reset_index(drop=True)
            for v, g in t.groupby("variant", sort=False)}



def variant(frame: pd.DataFrame) -> pd.Series:
    """``push/feedback/counter``, ``push/blind/coin``, … (+ ``/no-reset`` for a counter
    without reset, ``+AE/m`` with anti-entropy)."""
    fb = np.where(frame["protocol.feedback"].astype(bool), "feedback", "blind")
    ae = frame.get("protocol.anti_entropy", pd.Series(0, index=frame.index)).astype(int)
    reset = frame.get("protocol.reset", pd.Series(True, index=frame.index)).astype(bool)
    counter = frame["protocol.interest"].astype(str) == "counter"
    no_reset = (~reset & counter & (fb == "feedback")).to_numpy()
    tail = np.char.add(np.where(no_reset, "/no-reset", ""),
                       np.where(ae > 0, "+AE/" + ae.astype(str), ""))
    return pd.Series(frame["protocol.mode"].astype(str) + "/" + fb + "/"
                     + frame["protocol.interest"].astype(str) + tail, index=frame.index)


def rumor_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % band over seeds per k and variant."""
    m = metrics.copy()
    m["variant"] = variant(m)
    return summarize(m, ["protocol.k", "variant"],
                     ["residue", "residue_rumor_only", "traffic", "t_ave", "t_last"])


def fig_residue(summary: pd.DataFrame) -> go.Figure:
    """Residue against k per variant, with the paper's Table 1 and the fixed point."""
    from raysim.protocols.gossip.rumor import residue_fixed_point

    s = summary.rename(columns={"protocol.k": "k"})
    ks = np.arange(1, int(s["k"].max()) + 1)
    fig = fig_lines(s, "k", "residue", "variant", "Residue against k (n = 1000)",
                    "share of sites that never heard the rumor",
                    (ks, np.array([residue_fixed_point(int(k)) for k in ks])),
                    "s = exp(-(k+1)(1-s))", log_y=True)
    return paper_marks(fig, "residue")


def paper_marks(fig: go.Figure, metric: str) -> go.Figure:
    """Add the paper's Tables 1 and 2 values of ``metric`` against k as black marks."""
    for (name, table), symbol in zip(paper_tables().items(), ("x", "cross"), strict=True):
        fig.add_trace(go.Scatter(x=table["k"], y=table[metric], mode="markers",
                                 name=f"Demers et al. ({name})",
                                 marker={"symbol": symbol, "size": 10, "color": "#000"}))
    return fig


def rumor_table(summary: pd.DataFrame, name: str = "push/feedback/counter") -> pd.DataFrame:
    """The measured residue, traffic, t_ave and t_last of one variant beside the paper's
    table for it (Table 1 for push/feedback/counter, Table 2 for push/blind/coin)."""
    s = summary[summary["variant"] == name].pivot_table(index="protocol.k", columns="metric",
                                                        values="mean")
    s = s[["residue", "traffic", "t_ave", "t_last"]].reset_index().rename(
        columns={"protocol.k": "k"})
    return s.merge(paper_tables()[name], on="k", suffixes=("", " (paper)"))


# --- log rebuild ----------------------------------------------------------------------------


def log_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % band over seeds per flush policy and downtime."""
    m = metrics.copy()
    return summarize(m, ["protocol.flush", "downtime"],
                     ["recovery_time", "entries_fetched", "entries_lost", "prefix_agreement",
                      "recoveries"])


def fig_log(summary: pd.DataFrame, metric: str, title: str, ytitle: str) -> go.Figure:
    """``metric`` against downtime, one line per flush policy."""
    s = summary.copy()
    s["flush"] = "flush every " + s["protocol.flush"].astype(str)
    return fig_lines(s, "downtime", metric, "flush", title, ytitle)


# --- report sections ------------------------------------------------------------------------


def _parts(blocks: list[tuple[str, str, go.Figure | None, pd.DataFrame | None]]) -> list[Any]:
    from raysim.analysis.section import Part

    return [Part(t, n, f, tb) for t, n, f, tb in blocks]


def _violations_block(where: Where, runs: pd.DataFrame, kinds: Sequence[str] = ("obs",)
                      ) -> list[tuple[str, str, go.Figure | None, pd.DataFrame | None]]:
    """The checks run here on the observations, unless the runner ran them (level "all"),
    in which case the report's own "Safety violations" section lists them."""
    if "metric.violations" in runs and runs["metric.violations"].notna().all():
        return []
    v = violations(where, runs, kinds=kinds)
    note = ("The first violations of each run's safety checks (time, node, what was seen); "
            "none were found." if not len(v) else
            f"{len(v)} violation(s) listed (at most 5 per run).")
    return [("Safety checks on the observations", note, None, v.head(50))]


def retry_ack_parts(where: Where, runs: pd.DataFrame) -> list[Any]:
    """Report blocks for ``replication.retry_ack`` runs."""
    runs = runs[runs["protocol"] == "replication.retry_ack"].reset_index(drop=True)
    if not len(runs):
        return []
    m = log_metrics(where, runs)
    blocks: list[tuple[str, str, go.Figure | None, pd.DataFrame | None]] = []
    if "faults.loss" in m and m["faults.loss"].nunique() > 1:
        s = retry_summary(m)
        for ack in sorted(m.get("protocol.ack", pd.Series(["each"])).unique()):
            blocks.append((f"Transmissions per message ({ack} acks)",
                           "Mean and 95 % band over seeds; dotted: 1/(1-p)², the mean of a "
                           "geometric count when data and ack are each lost with p.",
                           fig_retry(s, "tx_per_message", ack), None))
            blocks.append((f"Median latency ({ack} acks)", "From first transmission to "
                           "in-order apply.", fig_retry(s, "latency_p50", ack), None))
        blocks.append(("Summary over seeds", "", None, s))
    if "network.delay.sigma" in m and "protocol.rto" in m:
        blocks.append(("Spurious retransmissions", "No loss: every duplicate is a "
                       "retransmission of a message that had arrived.", fig_spurious(m), None))
    blocks += _violations_block(where, runs)
    return _parts(blocks)


def anti_entropy_parts(where: Where, runs: pd.DataFrame) -> list[Any]:
    """Report blocks for ``replication.anti_entropy`` runs."""
    runs = runs[runs["protocol"] == "replication.anti_entropy"].reset_index(drop=True)
    if not len(runs):
        return []
    m = log_metrics(where, runs)
    s = ae_summary(m)
    curves = divergence_curves(where, runs)
    cfg = json.loads(runs["config"].iloc[0])
    parts_ = cfg.get("faults", {}).get("partitions") or []
    shade = (parts_[0]["start"], parts_[0]["end"]) if parts_ and parts_[0].get("end") else None
    by = next((c for c in ("protocol.crdt", "protocol.mode", "protocol.period")
               if c in curves and curves[c].nunique() > 1), None)
    blocks: list[tuple[str, str, go.Figure | None, pd.DataFrame | None]] = []
    if by is not None:
        blocks += [
            ("Replicas holding every write so far", "Share of replicas whose state includes "
             "every write made so far (mean and 95 % band over seeds).",
             fig_over_time(curves, "current", by, "Share of replicas up to date",
                           "share", shade), None),
            ("Distinct states", "How many different states the replicas hold; 1 = agreement.",
             fig_over_time(curves, "distinct", by, "Distinct states", "states", shade), None),
            ("Read staleness", "Writes made so far that a random replica does not see yet.",
             fig_over_time(curves, "staleness", by, "Staleness of reads", "writes", shade),
             None),
        ]
    if {"protocol.mode", "protocol.crdt"} <= set(s.columns):
        blocks.append(("Bytes per exchange", "Every message of an exchange; digests ship "
                       "only the deltas the other side lacks.", fig_bytes(s), None))
    blocks.append(("Convergence after the writes stop", "converged = 1: every replica "
                   "knows every write and all hold one value; matches_spec: that value is "
                   "the sequential specification's; convergence_time in ticks after the "
                   "last write.", None, s))
    blocks += _violations_block(where, runs, kinds=("obs", "crash", "recover"))
    return _parts(blocks)


def rumor_parts(where: Where, runs: pd.DataFrame) -> list[Any]:
    """Report blocks for ``gossip.rumor`` runs."""
    runs = runs[runs["protocol"] == "gossip.rumor"].reset_index(drop=True)
    if not len(runs):
        return []
    m = log_metrics(where, runs)
    s = rumor_summary(m)
    blocks: list[tuple[str, str, go.Figure | None, pd.DataFrame | None]] = [
        ("Residue against k", "Mean and 95 % band over seeds (each run's mean over its "
         "rumors); dotted: the fixed point s = exp(-(k+1)(1-s)) (push, feedback, counter); "
         "black marks: Demers et al. 1987, Tables 1 and 2 (n = 1000). With anti-entropy as "
         "the backstop the residue is 0.",
         fig_residue(s), None),
        ("Traffic against k", "Rumor copies sent per site; black marks: Demers et al. "
         "1987, Tables 1 and 2.",
         paper_marks(fig_lines(s.rename(columns={"protocol.k": "k"}), "k", "traffic",
                               "variant", "Traffic against k", "update messages per site"),
                     "traffic"), None),
    ]
    for name, table in (("push/feedback/counter", "Table 1"), ("push/blind/coin", "Table 2")):
        if (variant(m) == name).any():
            blocks.append((f"{name} beside the paper's {table}", "Paper values from "
                           "experiments/demers1987_tables.csv (CSL-89-1, p. 10).", None,
                           rumor_table(s, name)))
    blocks.append(("Summary over seeds", "", None, s))
    return _parts(blocks)


def log_rebuild_parts(where: Where, runs: pd.DataFrame) -> list[Any]:
    """Report blocks for ``replication.log_rebuild`` runs."""
    runs = runs[runs["protocol"] == "replication.log_rebuild"].reset_index(drop=True)
    if not len(runs):
        return []
    m = log_metrics(where, runs, kinds=("obs", "crash", "recover"))
    s = log_summary(m)
    blocks: list[tuple[str, str, go.Figure | None, pd.DataFrame | None]] = [
        ("Recovery time against downtime", "From recovery to a restored log (hello, fetch, "
         "append), mean and 95 % band over seeds.",
         fig_log(s, "recovery_time", "Recovery time", "ticks"), None),
        ("Entries fetched per recovery", "", fig_log(s, "entries_fetched",
                                                     "Entries fetched", "entries"), None),
        ("Entries lost per run", "Unflushed entries destroyed by crashes (0 when synced).",
         fig_log(s, "entries_lost", "Entries lost", "entries"), None),
        ("Summary over seeds", "", None, s),
        *_violations_block(where, runs, kinds=("obs", "crash", "recover")),
    ]
    return _parts(blocks)


def report_parts(where: Where, runs: pd.DataFrame) -> list[Any]:
    """Every replication block for the runs of a results directory."""
    return (retry_ack_parts(where, runs) + anti_entropy_parts(where, runs)
            + rumor_parts(where, runs) + log_rebuild_parts(where, runs))
