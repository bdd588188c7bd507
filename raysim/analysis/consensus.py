"""Raft and the naive leader election in a results directory: per-run measures, figures, report.

:func:`raft_runs` turns each run's log (observations and crashes only) into one row of
measures, with the run's parameters:

* ``election_time`` — after the first fault that hits the leader (a crash of it, or a
  partition whose side ``a`` holds it), ticks until a leader of a higher term is elected
  (NaN if none was before the run ended; ``elected`` says which), and ``election_terms``,
  the terms that took (1: no split vote; :func:`raysim.protocols.consensus.measures.
  election_after`, which Raft's ``metric.election_*`` columns use for a crash);
* ``split_votes`` — terms in which some server stood as candidate and nobody won;
* ``terms_per_minute`` — the highest term reached, per minute of virtual time;
* ``ops``, ``throughput`` (completed operations per second), ``latency_mean``,
  ``latency_p50``, ``latency_p99`` (ticks from a client's invocation to its answer);
* ``unavailable_max`` — the longest stretch without any completed operation (clients
  started), ``leaderless`` — total ticks in which no node was leader;
* the liveness summary: ``healed_at`` (when the last partition ended or crashed node
  recovered; NaN for a fault that lasts all run, e.g. loss), ``progress_after_heal``
  (whether a new log index was committed after it) and ``recovery_time`` (ticks from the
  heal to that commit), ``leader_after_heal`` (whether some node led after it: an idle
  cluster commits nothing new), ``client_recovery_time`` (to the first operation a client saw
  complete after the heal; clients back off, so this can be much later);
* ``violations.<check>`` for each safety check of the protocol (and ``single_leader``,
  which Raft does not promise), recomputed from the log with
  :mod:`raysim.protocols.consensus.checks`.

The paper's Figure 16 numbers quoted in the text of Ongaro & Ousterhout (2014, §9.3) are in
:data:`FIG16_PAPER`; its curves, read off the published vector plots (percentiles per
timeout range), are ``experiments/raft_paper_fig16.csv`` (:func:`paper_fig16`), drawn beside
ours by :func:`fig_election_cdf` and compared by :func:`fig16_table`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow.dataset as ds

from raysim.analysis.figures import PALETTE, short
from raysim.analysis.load import Where, load_events, load_runs, varying_params
from raysim.analysis.section import Part
from raysim.analysis.stats import band_of
from raysim.network.faults import parse_node_set
from raysim.protocols.consensus import checks as ck
from raysim.protocols.consensus import measures as ms

LOG_COLUMNS = ("time", "kind", "node", "peer", "msg_id", "name", "value")
RAFT_CHECKS = (
    "election_safety",
    "lease_safety",
    "log_matching",
    "leader_completeness",
    "state_machine_safety",
    "linearizability",
    "single_leader",
)

# parameters every per-run frame carries (when the runs have them), varying or not
CONTEXT = (
    "network.nodes",
    "network.delay.dist",
    "faults.loss",
    "faults.crashes",
    "faults.partitions",
    "protocol.clients",
    "protocol.election_min",
    "protocol.election_max",
    "protocol.timeout",
    "protocol.threshold",
    "protocol.period",
    "protocol.k",
    "protocol.w",
    "protocol.r",
    "protocol.fanout",
    "protocol.read_repair",
)

# (timeouts, statistic, ms): the numbers the paper's text states for Figure 16 (§9.3).
FIG16_PAPER: tuple[tuple[str, str, float], ...] = (
    ("150-150", "every trial above", 10_000.0),
    ("150-155", "median", 287.0),
    ("150-200", "max of 1000 trials", 513.0),
    ("12-24", "mean", 35.0),
    ("12-24", "max", 152.0),
)
FIG16_SOURCE = (
    "Ongaro & Ousterhout, In Search of an Understandable Consensus Algorithm, USENIX ATC "
    "2014, §9.3 and Figure 16 (5 servers, broadcast time ≈ 15 ms, 1000 trials per line, 100 "
    "for 150-150)"
)


PAPER_FIG16 = Path(__file__).resolve().parents[2] / "experiments" / "raft_paper_fig16.csv"


def paper_fig16(path: Path = PAPER_FIG16) -> pd.DataFrame:
    """The paper's Figure 16 curves: ``graph, timeouts, percentile, ms`` (empty if absent).

    ``graph`` is ``randomness`` (top: 150-150 … 150-300 ms) or ``scale`` (bottom: 12-24 …
    100-200 ms); ``percentile`` % of the paper's trials took at most ``ms``.
    """
    if not path.is_file():  # NOTE: an installed package without the repository's files
        return pd.DataFrame(columns=["graph", "timeouts", "percentile", "ms"])
    return pd.read_csv(path, comment="#")


def run_logs(where: Where, runs: pd.DataFrame) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Each run's observation and lifecycle rows as the checkers read them (numpy columns)."""
    flt = ds.field("kind").isin(["obs", "crash", "recover", "leave"])
    ev = load_events(where, ["run_id", *LOG_COLUMNS], flt, runs=runs)
    for c in ("kind", "name"):
        ev[c] = ev[c].astype(object)
    for run_id, g in ev.groupby("run_id", sort=True):
        g = g.sort_values(["time", "node"], kind="stable")
        yield str(run_id), {c: g[c].to_numpy() for c in LOG_COLUMNS}


def _json(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        out = json.loads(value)
        return out if isinstance(out, list) else []
    return list(value) if isinstance(value, list) else []


def fault_times(row: pd.Series) -> tuple[list[tuple[int, np.ndarray]], float]:
    """``([(start, nodes hit)], healed_at)`` of a run's crashes and partitions.

    ``healed_at`` is when the last partition ended or crashed node recovered; NaN when some
    fault never heals (a crash without recovery, an endless partition).
    """
    n = int(row["network.nodes"])
    hits: list[tuple[int, np.ndarray]] = []
    ends: list[float] = []
    for c in _json(row.get("faults.crashes")):
        if c.get("node") is not None:
            mask = np.zeros(n, dtype=bool)
            mask[int(c["node"])] = True
        elif c.get("nodes") is not None:
            mask = parse_node_set(c["nodes"], n, "faults.crashes")
        else:
            mask = np.ones(n, dtype=bool)
        hits.append((int(c["at"]), mask))
        ends.append(float(c["recover_at"]) if c.get("recover_at") is not None else np.nan)
    for p in _json(row.get("faults.partitions")):
        hits.append((int(p.get("start", 0)), parse_node_set(p["a"], n, "faults.partitions")))
        ends.append(float(p["end"]) if p.get("end") is not None else np.nan)
    healed = float(max(ends)) if ends and not np.isnan(ends).any() else np.nan
    return sorted(hits, key=lambda h: h[0]), healed


def raft_measures(cols: dict[str, np.ndarray], row: pd.Series) -> dict[str, float]:
    """The measures of one run (see the module docstring)."""
    end = float(row.get("end_time", row.get("experiment.duration", 0)))
    minutes = max(end, 1.0) / 60_000.0
    out: dict[str, float] = {}
    log_end = int(np.max(cols["time"])) + 1 if len(cols["time"]) else 0
    # a leadership still open when the log ends lasts until the run ends
    intervals = [(nd, term, s, int(end) if e >= log_end else e)
                 for nd, term, s, e in ck.leader_intervals(cols)]
    leaders = ck.rows_of(cols, "leader")
    hits, healed = fault_times(row)
    out.update(ms.election_after(cols, intervals, hits))
    cands = ck.rows_of(cols, "candidate")
    won = set(leaders.value.astype(int).tolist())
    out["split_votes"] = float(len(set(cands.value.astype(int).tolist()) - won))
    top = max([0, *cands.value.astype(int).tolist(), *won])
    out["terms_per_minute"] = top / minutes
    # clients
    ops = ck.history(cols)
    done = [o for o in ops if np.isfinite(o.ret)]
    lat = np.array([o.ret - o.call for o in done])
    out["ops"] = float(len(done))
    out["throughput"] = len(done) / (max(end, 1.0) / 1000.0)
    out["latency_mean"] = float(lat.mean()) if len(lat) else np.nan
    out["latency_p50"] = float(np.percentile(lat, 50)) if len(lat) else np.nan
    out["latency_p99"] = float(np.percentile(lat, 99)) if len(lat) else np.nan
    first_call = min((o.call for o in ops), default=np.nan)
    if np.isfinite(first_call):
        marks = np.sort(np.array([first_call, *[o.ret for o in done], end]))
        out["unavailable_max"] = float(np.diff(marks).max()) if len(marks) > 1 else np.nan
    else:
        out["unavailable_max"] = np.nan
    covered = np.zeros(int(end) + 1, dtype=bool)
    for _nd, _term, s, e in intervals:
        covered[max(0, s) : max(0, min(e, int(end)))] = True
    out["leaderless"] = float((~covered[: int(end)]).sum())
    out["healed_at"] = healed
    commits = ck.rows_of(cols, "commit")
    seen: set[int] = set()
    new_index_times = []
    for t, idx in zip(commits.time.tolist(), commits.value.astype(int).tolist(), strict=True):
        if idx not in seen:
            seen.add(idx)
            new_index_times.append(t)
    firsts = np.array(new_index_times, dtype=float)
    after = firsts[firsts >= healed] if np.isfinite(healed) else np.array([])
    out["progress_after_heal"] = float(len(after) > 0) if np.isfinite(healed) else np.nan
    out["leader_after_heal"] = (
        float(any(e > healed for _nd, _t, s, e in intervals)) if np.isfinite(healed) else np.nan
    )
    out["recovery_time"] = float(after[0] - healed) if len(after) else np.nan
    rets = np.array(sorted(o.ret for o in done))
    oks = rets[rets >= healed] if np.isfinite(healed) else np.array([])
    out["client_recovery_time"] = float(oks[0] - healed) if len(oks) else np.nan
    return out


def raft_runs(
    where: Where, runs: pd.DataFrame | None = None, checks: Sequence[str] = RAFT_CHECKS
) -> pd.DataFrame:
    """One row per run: its varying parameters, :func:`raft_measures` and violation counts."""
    if runs is None:
        runs = load_runs(where)
    runs = runs.reset_index(drop=True)
    by_id = runs.set_index("run_id")
    rows = []
    for run_id, cols in run_logs(where, runs):
        row: pd.Series = by_id.loc[run_id]  # type: ignore[assignment]
        m = raft_measures(cols, row)
        found = ck.run_checks(cols, list(checks))
        for c in checks:
            m[f"violations.{c}"] = float(sum(v.check == c for v in found))
        # the first violation of a property the protocol promises (single_leader is shown
        # only when it is the one asked for)
        real = [v for v in found if v.check != "single_leader" or len(checks) == 1
                or "election_safety" not in checks]
        first = min(real, key=lambda v: v.time) if real else None
        extra: dict[str, Any] = {
            "first_violation": first.detail if first else "",
            "first_violation_check": first.check if first else "",
            "first_violation_time": float(first.time) if first else np.nan,
            "first_violation_nodes": ",".join(map(str, first.nodes)) if first else "",
        }
        rows.append({"run_id": run_id, **m, **extra})
    frame = pd.DataFrame(rows)
    keep = ["run_id", "protocol", "seed", *CONTEXT, *varying_params(runs)]
    return runs[[c for c in dict.fromkeys(keep) if c in runs]].merge(frame, on="run_id")


def timeout_label(frame: pd.DataFrame) -> pd.Series:
    """``"150-300"`` from ``protocol.election_min`` and ``protocol.election_max``."""
    lo = frame.get("protocol.election_min", pd.Series(150, index=frame.index))
    hi = frame.get("protocol.election_max", pd.Series(300, index=frame.index))
    lo = lo.fillna(150).astype(int).astype(str)
    hi = hi.fillna(300).astype(int).astype(str)
    return lo + "-" + hi


def summary(frame: pd.DataFrame, by: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Mean and 95 % confidence interval over seeds of ``values`` per group of ``by``."""
    rows = []
    for key, g in frame.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for col in values:
            mean, lo, hi, n = band_of(g[col].to_numpy(dtype=float))
            rows.append({**dict(zip(by, key, strict=True)), "metric": col, "mean": float(mean),
                         "lo": float(lo), "hi": float(hi), "n": int(n)})
    return pd.DataFrame(rows)


# --- figures -----------------------------------------------------------------------------------


def fig_election_cdf(
    frame: pd.DataFrame,
    paper: bool = True,
    title: str = "Time to elect a new leader after the leader's crash",
) -> go.Figure:
    """Cumulative share of runs with a new leader by time t, one line per timeout range.

    Runs with no new leader before they ended are counted in the denominator (the curve
    stops short of 100 %). With ``paper``, the paper's curve for the same range is a dotted
    line of the same colour (:func:`paper_fig16`; the quantiles its text states, as markers,
    where the curve is missing).
    """
    fig = go.Figure()
    labels = timeout_label(frame)
    order = sorted(labels.unique(), key=lambda s: tuple(int(x) for x in s.split("-")))
    for i, lab in enumerate(order):
        t = np.sort(frame.loc[labels == lab, "election_time"].dropna().to_numpy())
        n = int((labels == lab).sum())
        if not n:
            continue
        y = np.arange(1, len(t) + 1) / n * 100.0
        fig.add_trace(go.Scatter(x=t, y=y, mode="lines", line={"shape": "hv",
                                 "color": PALETTE[i % len(PALETTE)]}, name=f"{lab} ms (n={n})"))
    curves = paper_fig16() if paper else pd.DataFrame(columns=["timeouts", "percentile", "ms"])
    for i, lab in enumerate(order):
        c = curves[curves["timeouts"] == lab].sort_values("percentile")
        if len(c):
            fig.add_trace(go.Scatter(
                x=c["ms"], y=c["percentile"], mode="lines", name=f"paper {lab} ms",
                line={"dash": "dot", "shape": "hv", "color": PALETTE[i % len(PALETTE)]}))
        elif paper:
            for stat_lab, stat, ms in FIG16_PAPER:
                if stat_lab == lab and stat != "mean":
                    fig.add_trace(go.Scatter(
                        x=[ms], y=[50.0 if stat == "median" else 100.0], mode="markers",
                        marker={"symbol": "x", "size": 11, "color": PALETTE[i % len(PALETTE)]},
                        name=f"paper {lab}: {stat} {ms:g} ms"))
    fig.update_layout(title=title, template="plotly_white", height=440,
                      xaxis={"title": "ms after the crash", "type": "log"},
                      yaxis={"title": "cumulative % of runs", "range": [0, 101]})
    return fig


def fig16_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per timeout range: our runs' election-time quantiles beside the paper's (ms).

    Our quantiles count runs without a new leader as slower than any (NaN past the share
    elected), as the paper's curves do; ``first term`` is the share of our elections won in
    the first term after the crash (no split vote).
    """
    curves = paper_fig16()
    labels = timeout_label(frame)
    rows = []
    for lab in sorted(labels.unique(), key=lambda s: tuple(int(x) for x in s.split("-"))):
        g = frame[labels == lab]
        t = g["election_time"].to_numpy(dtype=float)
        t = np.where(np.isnan(t), np.inf, t)
        row: dict[str, Any] = {"timeouts": lab, "runs": len(g),
                               "elected": float(np.isfinite(t).mean())}
        if "election_terms" in g:
            row["first term"] = float((g["election_terms"] == 1).mean())
        c = curves[curves["timeouts"] == lab].set_index("percentile")["ms"]
        for q in (25, 50, 75, 90):
            v = float(np.quantile(t, q / 100, method="inverted_cdf")) if len(t) else np.nan
            row[f"p{q}"] = v if np.isfinite(v) else np.nan
            row[f"paper p{q}"] = float(c[q]) if q in c.index else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def fig_bars(frame: pd.DataFrame, x: str, y: str, color: str | None = None,
             title: str = "", ytitle: str = "") -> go.Figure:
    """Mean of ``y`` over seeds with 95 % confidence bars, against ``x``, one line per colour."""
    fig = go.Figure()
    if color is not None and color not in frame:
        color = None
    groups = frame.groupby(color, sort=True) if color else [("all", frame)]
    for i, (key, g) in enumerate(groups):
        s = summary(g, [x], [y]).sort_values(x)
        if not len(s):
            continue
        fig.add_trace(go.Scatter(
            x=s[x].astype(str) if s[x].dtype == object else s[x], y=s["mean"], mode="lines+markers",
            name=short(color) + "=" + str(key) if color else y,
            line={"color": PALETTE[i % len(PALETTE)]},
            error_y={"type": "data", "symmetric": False, "array": s["hi"] - s["mean"],
                     "arrayminus": s["mean"] - s["lo"]}))
    fig.update_layout(title=title, template="plotly_white", height=420,
                      xaxis={"title": short(x)}, yaxis={"title": ytitle or y})
    return fig


def scenario(frame: pd.DataFrame) -> pd.Series:
    """A short name for each run's faults (crash, partition kind, loss, delay)."""
    parts = []
    for _, r in frame.iterrows():
        bits = []
        if _json(r.get("faults.crashes")):
            bits.append("crash")
        for p in _json(r.get("faults.partitions")):
            one_way = p.get("direction") == "a_to_b"
            bits.append(f"{'one-way ' if one_way else ''}partition {p['a']}")
        if float(r.get("faults.loss", 0) or 0) > 0:
            bits.append(f"loss {r['faults.loss']:g}")
        if str(r.get("network.delay.dist", "")) == "pareto":
            bits.append("pareto delays")
        parts.append(", ".join(bits) or "no faults")
    return pd.Series(parts, index=frame.index)


# --- report sections -------------------------------------------------------------------------


def _violations_table(frame: pd.DataFrame, checks: Sequence[str]) -> pd.DataFrame:
    cols = [f"violations.{c}" for c in checks if f"violations.{c}" in frame]
    out = pd.DataFrame({
        "check": [c.removeprefix("violations.") for c in cols],
        "runs": [len(frame)] * len(cols),
        "runs with a violation": [int((frame[c] > 0).sum()) for c in cols],
        "violations": [int(frame[c].sum()) for c in cols],
    })
    return out


def _first_violations(frame: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    bad = frame[frame["first_violation"] != ""]
    cols = ["run_id", "seed", "first_violation_check", "first_violation_time",
            "first_violation_nodes", "first_violation"]
    return bad[cols].head(k).rename(columns=lambda c: c.removeprefix("first_violation_")
                                    if c != "first_violation" else "detail")


def raft_section(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The report's Raft section: safety over every run, elections, latency, liveness."""
    runs = runs[runs["protocol"] == "consensus.raft"]
    if not len(runs):
        return []
    frame = raft_runs(where, runs)
    frame["timeouts"] = timeout_label(frame)
    frame["scenario"] = scenario(frame)
    faulty = frame[frame["scenario"] != "no faults"]
    out = [Part(
        "Raft: safety on every run",
        f"{len(frame)} runs ({len(faulty)} with faults). Each log was checked for election "
        "safety, lease safety, log matching, leader completeness, state-machine safety and "
        "linearizability of the clients' register history (recomputed here from the "
        "observations, whatever the log level). single_leader (two nodes believing they lead "
        "at once) is not a Raft property: a deposed leader keeps believing until it hears a "
        "higher term, and terms make that harmless.",
        table=_violations_table(frame, RAFT_CHECKS))]
    firsts = _first_violations(frame)
    if len(firsts):
        out.append(Part("Raft: first violations", table=firsts))
    elect = frame[frame["elected"].notna()]
    if len(elect):
        stats = elect.groupby("timeouts")["election_time"].describe(
            percentiles=[0.5, 0.99])[["count", "mean", "50%", "99%", "max"]].reset_index()
        stats = stats.rename(columns={"count": "new leader elected", "50%": "median",
                                      "99%": "99th pct"})
        stats.insert(1, "runs", elect.groupby("timeouts").size().to_numpy())
        out += [
            Part("Raft: time to elect a new leader",
                 "From the first fault that hits the leader to the election of a leader of a "
                 "higher term; cumulative share of runs per election-timeout range. Markers: "
                 f"the numbers stated in the paper's text ({FIG16_SOURCE}).",
                 fig_election_cdf(elect), figure_id="fig-raft-election-cdf"),
            Part("Raft: election time per timeout range (ticks = ms)", table=stats.round(1)),
            Part("Raft: election time against the paper's Figure 16",
                 "Quantiles of the time to a new leader (ms; a run without one counts as "
                 "slowest) beside those read off the paper's curves "
                 "(experiments/raft_paper_fig16.csv); 'first term' is the share of our "
                 "elections won without a split vote.", table=fig16_table(elect).round(3)),
            Part("The Raft paper's stated values (Figure 16)",
                 table=pd.DataFrame(FIG16_PAPER,
                                    columns=["timeouts", "paper statistic", "paper ms"])),
        ]
        if "network.nodes" in elect and elect["network.nodes"].nunique() > 1:
            out.append(Part(
                "Raft: election time against cluster size",
                "Mean over runs with 95 % confidence bars; nodes include the clients.",
                fig_bars(elect, "network.nodes", "election_time", "timeouts",
                         "Election time against cluster size", "ticks (ms)"),
                figure_id="fig-raft-election-n"))
    ops = frame[frame["ops"] > 0]
    if len(ops) and "network.nodes" in ops:
        color = "faults.loss" if "faults.loss" in ops and ops["faults.loss"].nunique() > 1 else None
        note = ("Client operations from invocation to answer (reads and writes both go "
                "through the log unless leases are on), mean over seeds with 95 % intervals.")
        out += [
            Part("Raft: commit latency", note,
                 fig_bars(ops, "network.nodes", "latency_mean", color,
                          "Mean operation latency", "ticks (ms)"), figure_id="fig-raft-latency"),
            Part("Raft: throughput", "",
                 fig_bars(ops, "network.nodes", "throughput", color,
                          "Completed operations per second", "ops/s"),
                 figure_id="fig-raft-throughput"),
        ]
    healed = frame[frame["healed_at"].notna()]
    live = frame.groupby(["scenario"]).agg(
        runs=("run_id", "size"),
        progress_after_heal=("progress_after_heal", "mean"),
        leader_after_heal=("leader_after_heal", "mean"),
        recovery_time=("recovery_time", "mean"),
        client_recovery_time=("client_recovery_time", "mean"),
        unavailable_max=("unavailable_max", "mean"),
        split_votes=("split_votes", "mean"),
        terms_per_minute=("terms_per_minute", "mean"),
        leaderless=("leaderless", "mean"),
    ).reset_index()
    out.append(Part(
        "Raft: liveness and availability",
        "Per scenario (means over seeds, cluster sizes and timeouts): share of runs that "
        f"committed a new log index after the last fault healed ({len(healed)} runs have a "
        "heal time), whether some node led after it, how long the commit took, how long until "
        "a client saw an operation complete, the longest stretch without a completed "
        "operation, split votes, terms per minute, and time with no leader at all.",
        table=live.round(3)))
    return out


def naive_section(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The report's naive-leader section: two leaders at once, found by the checker."""
    runs = runs[runs["protocol"] == "consensus.naive_leader"]
    if not len(runs):
        return []
    frame = raft_runs(where, runs, checks=("single_leader",))
    frame["scenario"] = scenario(frame)
    by = [c for c in ("scenario", "protocol.timeout") if c in frame]
    table = frame.groupby(by).agg(
        runs=("run_id", "size"),
        runs_with_two_leaders=("violations.single_leader", lambda s: int((s > 0).sum())),
        violations=("violations.single_leader", "sum"),
    ).reset_index()
    out = [Part(
        "Naive leader election: two leaders at once",
        "The lowest id heard from within a timeout leads; nothing orders two beliefs. "
        "single_leader counts the times a node became leader while another still was. Runs "
        "without faults can show it too under heavy-tailed delays: any hello late by more "
        "than the timeout is enough.",
        table=table)]
    firsts = _first_violations(frame)
    if len(firsts):
        out.append(Part("Naive leader election: first violations", table=firsts))
    return out
