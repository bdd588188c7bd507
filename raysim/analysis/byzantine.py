"""What Byzantine nodes break: averaging error against liars, Bracha's checks against n and f.

Adversary variants emit ``byzantine`` at start (see :mod:`raysim.protocols.gossip.adversaries`
and :mod:`raysim.protocols.byzantine.adversaries`), so the honest nodes of a run are read
from its own log, whatever node set the configuration named.

Typical use::

    from raysim.analysis import byzantine as rb

    err = rb.averaging_error("results/byzantine_averaging")    # one row per run
    rb.fig_averaging_error(rb.averaging_summary(err)).show()
    per_run = rb.bracha_runs("results/bracha")
    rb.bracha_summary(per_run)                                 # violations per (n, k)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from raysim.analysis import section
from raysim.analysis.load import Where, load_runs, observations

__all__ = [
    "anti_entropy",
    "anti_entropy_summary",
    "averaging",
    "averaging_error",
    "averaging_summary",
    "bracha",
    "bracha_runs",
    "bracha_summary",
    "chord",
    "chord_summary",
    "fig_anti_entropy",
    "fig_averaging_error",
    "fig_bracha",
    "fig_bracha_messages",
    "fig_chord",
    "load_runs",
]
from raysim.analysis.section import Part
from raysim.analysis.stats import band_of

BEHAVIOUR = "faults.byzantine.behaviour"


def _liars(where: Where, runs: pd.DataFrame) -> pd.DataFrame:
    """(run_id, node) of every Byzantine node that declared itself."""
    return observations(where, "byzantine", runs=runs)[["run_id", "node"]]


def averaging_error(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per run: ``run_id, liars, behaviour, true_mean, estimate, error, max_error``.

    ``true_mean`` is the mean of the honest nodes' first reported values (their initial
    values), ``estimate`` the mean of their values in the last quarter of the run,
    ``error`` = |estimate - true_mean| and ``max_error`` the largest single honest
    deviation from ``true_mean`` in that last quarter.
    """
    runs = load_runs(where) if runs is None else runs
    cols = ["run_id", "liars", "behaviour", "true_mean", "estimate", "error", "max_error"]
    obs = observations(where, "value", runs=runs)
    if not len(obs):
        return pd.DataFrame(columns=cols)
    liars = _liars(where, runs)
    bad = set(zip(liars["run_id"], liars["node"], strict=True))
    honest = obs[[(r, n) not in bad for r, n in zip(obs["run_id"], obs["node"], strict=True)]]
    behaviour = runs.set_index("run_id")[BEHAVIOUR] if BEHAVIOUR in runs else None
    counts = liars.groupby("run_id").size()
    out = []
    for rid, g in honest.groupby("run_id", sort=True):
        g = g.sort_values(["node", "time"])
        true = float(g.groupby("node")["value"].first().mean())
        end = int(g["time"].max())
        late = g[g["time"] >= end * 3 // 4]["value"].to_numpy(dtype=np.float64)
        est = float(late.mean())
        out.append({
            "run_id": rid, "liars": int(counts.get(str(rid), 0)),
            "behaviour": behaviour.get(rid) if behaviour is not None else None,
            "true_mean": true, "estimate": est, "error": abs(est - true),
            "max_error": float(np.abs(late - true).max()),
        })
    return pd.DataFrame(out, columns=cols)


def averaging_summary(err: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % band over seeds of ``error`` per (behaviour, liars)."""
    rows = []
    for (beh, k), g in err.groupby(["behaviour", "liars"], sort=True, dropna=False):
        mean, lo, hi, n = band_of(g["error"].to_numpy(dtype=np.float64), "ci")
        rows.append({"behaviour": beh, "liars": int(str(k)), "mean": float(mean), "lo": float(lo),
                     "hi": float(hi), "max_error": float(g["max_error"].max()), "runs": int(n)})
    return pd.DataFrame(rows)


def fig_averaging_error(summary: pd.DataFrame) -> go.Figure:
    """Honest nodes' error against the number of liars, one line per behaviour (log y)."""
    fig = go.Figure()
    fig.update_layout(title="Push-pull averaging with liars: honest estimate vs true mean",
                      template="plotly_white", height=400, xaxis_title="Byzantine nodes",
                      yaxis_title="|honest estimate − true mean|", yaxis_type="log")
    for beh, d in summary.groupby("behaviour", sort=True, dropna=False):
        d = d.sort_values("liars")
        y = np.maximum(d["mean"].to_numpy(dtype=np.float64), 1e-12)
        fig.add_trace(go.Scatter(
            x=d["liars"], y=y, mode="lines+markers", name=str(beh),
            error_y={"type": "data", "symmetric": False,
                     "array": np.maximum(d["hi"] - d["mean"], 0),
                     "arrayminus": np.minimum(d["mean"] - d["lo"], y - 1e-12)}))
    return fig


def averaging(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The averaging section, plus the liars' effect when some runs had Byzantine nodes."""
    parts = section.averaging(where, runs)
    err = averaging_error(where, runs)
    if not len(err) or not (err["liars"] > 0).any():
        return parts
    summary = averaging_summary(err)
    return [*parts, Part(
        "Averaging with liars",
        "Mean over seeds (95 % band) of the distance between the honest nodes' estimate "
        "(their values in the last quarter of the run) and the true mean of their initial "
        "values, against the number of Byzantine nodes. A liar never updates and keeps "
        "re-injecting its value, so a single one drags every honest estimate to it: "
        "averaging conserves the sum only if every node follows the protocol.",
        fig_averaging_error(summary), figure_id="fig-byzantine-averaging"),
        Part("Averaging with liars: summary", table=summary)]


# --- Bracha ----------------------------------------------------------------------------------

CHECKS = ("agreement", "validity", "totality")


def bracha_runs(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per run: ``run_id, n, byzantine, f, tolerated, messages, violations, <check>…``.

    ``byzantine`` is the number of Byzantine nodes (from the log), ``f`` the fault bound the
    thresholds assumed, ``tolerated`` whether ``byzantine <= f`` (equivalently ``< n/3``
    when ``f = (n-1)//3``).
    """
    runs = load_runs(where) if runs is None else runs
    liars = _liars(where, runs).groupby("run_id").size()
    n = runs["network.nodes"].astype(int)
    f_col = runs["protocol.f"] if "protocol.f" in runs else pd.Series(np.nan, index=runs.index)
    f = [int(x) if pd.notna(x) else (k - 1) // 3 for x, k in zip(f_col, n, strict=True)]
    out = pd.DataFrame({
        "run_id": runs["run_id"], "n": n, "f": f,
        "byzantine": [int(liars.get(r, 0)) for r in runs["run_id"]],
        "messages": runs["metric.messages_per_broadcast"].astype(float),
        "violations": runs["metric.violations"].astype(int),
    })
    for c in CHECKS:
        out[c] = runs[f"metric.violations.{c}"].astype(int).to_numpy()
    out["tolerated"] = out["byzantine"] <= out["f"]
    return out.reset_index(drop=True)


def bracha_summary(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per (n, byzantine): runs, runs with a violation per check, mean messages."""
    g = per_run.groupby(["n", "byzantine", "f", "tolerated"], sort=True)
    out = g.agg(runs=("run_id", "size"), messages=("messages", "mean"),
                **{c: (c, lambda s: int((s > 0).sum())) for c in CHECKS}).reset_index()
    out["runs_violated"] = g["violations"].agg(lambda s: int((s > 0).sum())).to_numpy()
    return out


def fig_bracha(summary: pd.DataFrame) -> go.Figure:
    """Share of runs that broke agreement against n, tolerated vs one too many."""
    fig = go.Figure()
    fig.update_layout(title="Bracha's broadcast: runs that broke agreement",
                      template="plotly_white", height=400, xaxis_title="nodes n",
                      yaxis_title="share of runs with an agreement violation")
    for tol, d in summary.groupby("tolerated", sort=True):
        d = d.sort_values("n")
        name = "k ≤ f = ⌊(n−1)/3⌋ Byzantine" if tol else "k = n/3 Byzantine"
        fig.add_trace(go.Scatter(x=d["n"], y=d["agreement"] / d["runs"], mode="lines+markers",
                                 name=name))
    return fig


def fig_bracha_messages(summary: pd.DataFrame) -> go.Figure:
    """Messages per broadcast against n, with 2n² + n (every honest node echoes and readies)."""
    d = summary.groupby("n", sort=True)["messages"].mean().reset_index()
    fig = go.Figure()
    fig.update_layout(title="Bracha's broadcast: messages per broadcast",
                      template="plotly_white", height=400, xaxis_title="nodes n",
                      yaxis_title="messages")
    fig.add_trace(go.Scatter(x=d["n"], y=d["messages"], mode="markers", name="measured"))
    x = np.arange(int(d["n"].min()), int(d["n"].max()) + 1)
    fig.add_trace(go.Scatter(x=x, y=2 * x**2 + x, mode="lines", name="2n² + n",
                             line={"dash": "dot"}))
    return fig


def bracha(where: Where, runs: pd.DataFrame) -> list[Part]:
    """Report section of ``byzantine.bracha``."""
    per_run = bracha_runs(where, runs)
    if not len(per_run):
        return []
    summary = bracha_summary(per_run)
    tol = per_run[per_run["tolerated"]]
    over = per_run[~per_run["tolerated"]]
    note = (
        f"{len(tol)} runs with at most f = ⌊(n−1)/3⌋ Byzantine nodes: "
        f"{int((tol['violations'] > 0).sum())} with a violation; {len(over)} runs with more: "
        f"{int((over['violations'] > 0).sum())} with a violation. Agreement needs two echo "
        "quorums of more than (n+f)/2 nodes to share an honest node; with n/3 Byzantine "
        "nodes they share only Byzantine ones."
    )
    return [
        Part("Bracha's reliable broadcast: agreement", note, fig_bracha(summary),
             figure_id="fig-bracha-agreement"),
        Part("Bracha's reliable broadcast: messages per broadcast",
             "Every node echoes and readies once to all n nodes: about 2n² + n messages.",
             fig_bracha_messages(summary), figure_id="fig-bracha-messages"),
        Part("Bracha's reliable broadcast: summary", table=summary),
    ]


# --- Chord -----------------------------------------------------------------------------------

FRACTION = "faults.byzantine.fraction"


def chord_summary(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (behaviour, routing mode, malicious share): lookups, share wrong, share gave up."""
    from raysim.analysis import chord as rc

    runs = rc.chord_runs(where) if runs is None else runs
    cols = ["behaviour", "mode", "share", "lookups", "wrong", "gave_up", "failed"]
    if BEHAVIOUR not in runs or not runs[BEHAVIOUR].notna().any():
        return pd.DataFrame(columns=cols)
    look = rc.lookups(where, runs=runs, params=[])
    look = look.merge(runs[["run_id", BEHAVIOUR, FRACTION, "protocol.mode"]], on="run_id")
    g = look.groupby([BEHAVIOUR, "protocol.mode", FRACTION], sort=True, dropna=False)
    out = g.agg(lookups=("key", "size"), wrong=("wrong", "mean"), gave_up=("gave_up", "mean"),
                failed=("failed", "mean")).reset_index()
    return out.rename(columns={BEHAVIOUR: "behaviour", "protocol.mode": "mode",
                               FRACTION: "share"})[cols]


def fig_chord(summary: pd.DataFrame) -> go.Figure:
    """Failed lookups (wrong or given up) against the malicious share, per behaviour/mode."""
    fig = go.Figure()
    fig.update_layout(title="Chord lookups with malicious nodes", template="plotly_white",
                      height=400, xaxis_title="share of malicious nodes",
                      yaxis_title="share of lookups failed (wrong or given up)")
    for (beh, mode), d in summary.groupby(["behaviour", "mode"], sort=True):
        d = d.sort_values("share")
        fig.add_trace(go.Scatter(x=d["share"], y=d["failed"], mode="lines+markers",
                                 name=f"{beh}, {mode}"))
    return fig


def chord(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The Chord section, plus failed lookups against the malicious share when runs had some."""
    parts = section.chord(where, runs)
    summary = chord_summary(where, runs)
    if not len(summary):
        return parts
    return [*parts, Part(
        "Chord with malicious nodes",
        "Share of lookups that ended at the wrong node or gave up, against the share of "
        "malicious nodes (OverSim's attacks): 'wrong' nodes claim every key they are asked "
        "about, 'drop' nodes silently drop the lookups they should route (the previous hop "
        "times out and routes around them).",
        fig_chord(summary), figure_id="fig-byzantine-chord"),
        Part("Chord with malicious nodes: summary", table=summary)]


# --- anti-entropy with equivocators ----------------------------------------------------------

AE_CHECKS = ("diverged_after_quiescence", "wrong_value")


def anti_entropy_summary(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (exchange mode, number of equivocators): runs, the share of runs with each
    check's violation, mean violations per run, and the share that converged."""
    runs = load_runs(where) if runs is None else runs
    runs = runs[runs["protocol"] == "replication.anti_entropy"]
    cols = ["mode", "equivocators", "runs", *[f"share_{c}" for c in AE_CHECKS],
            "violations", "converged"]
    if BEHAVIOUR not in runs or not (runs[BEHAVIOUR] == "equivocate").any():
        return pd.DataFrame(columns=cols)
    liars = _liars(where, runs).groupby("run_id").size().rename("equivocators")
    r = runs.merge(liars, left_on="run_id", right_index=True, how="left")
    r["equivocators"] = r["equivocators"].fillna(0).astype(int)
    for c in AE_CHECKS:
        col = f"metric.violations.{c}"
        r[f"share_{c}"] = (r[col] > 0).astype(float) if col in r else 0.0
    r["violations"] = r.get("metric.violations", pd.Series(0.0, index=r.index))
    if "metric.converged" in r:
        r["converged"] = r["metric.converged"]
    else:
        from raysim.analysis import replication as rr

        conv = rr.log_metrics(where, runs)[["run_id", "converged"]]
        r = r.merge(conv, on="run_id", how="left")
    g = r.groupby(["protocol.mode", "equivocators"], sort=True)
    out = g.agg(runs=("run_id", "size"), violations=("violations", "mean"),
                converged=("converged", "mean"),
                **{f"share_{c}": (f"share_{c}", "mean") for c in AE_CHECKS}).reset_index()
    return out.rename(columns={"protocol.mode": "mode"})[cols]


def fig_anti_entropy(summary: pd.DataFrame) -> go.Figure:
    """Share of runs with each violation against the number of equivocators, per mode."""
    fig = go.Figure()
    fig.update_layout(title="Anti-entropy with equivocating replicas", template="plotly_white",
                      height=400, xaxis_title="equivocating replicas",
                      yaxis_title="share of runs with the violation", yaxis_range=[-0.05, 1.05])
    for mode, d in summary.groupby("mode", sort=True):
        d = d.sort_values("equivocators")
        for c, dash in zip(AE_CHECKS, ("solid", "dot"), strict=True):
            fig.add_trace(go.Scatter(x=d["equivocators"], y=d[f"share_{c}"],
                                     mode="lines+markers", line={"dash": dash},
                                     name=f"{mode}: {c}"))
    return fig


def anti_entropy(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The anti-entropy section, plus what equivocators break when runs had some."""
    from raysim.analysis import replication as rr

    parts = rr.anti_entropy_parts(where, runs)
    summary = anti_entropy_summary(where, runs)
    if not len(summary):
        return parts
    return [*parts, Part(
        "Anti-entropy with equivocators",
        "An equivocating replica ships one version of each of its writes to even peers and "
        "another, under the same origin and sequence number, to odd peers. With version-"
        "vector digests the honest replicas hold equal vectors and different sets, so they "
        "never converge (diverged_after_quiescence); with full states the join merges both "
        "versions, so they converge on elements nobody wrote (wrong_value). One is enough: "
        "every honest replica merges what it is sent, so no honest majority outvotes it.",
        fig_anti_entropy(summary), figure_id="fig-byzantine-anti-entropy"),
        Part("Anti-entropy with equivocators: summary", table=summary)]
