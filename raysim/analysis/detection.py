"""Failure detectors in a results directory: detection times, false suspicions, the trade-off.

:func:`detector_runs` gives one row per run (with its parameters):

* ``detect_first`` — ticks from the first crash to the first ``suspect`` of the crashed node
  by anyone (0 if someone already suspected it, by luck, when it crashed); ``detect_all`` —
  until every node up at the crash (and still up) suspected it;
  ``know_all`` — until every such node had it as suspect or ``dead`` (SWIM's "every member
  knows"); ``dead_all`` — until all had confirmed it dead (SWIM);
* ``false_suspicions`` — ``suspect`` rows about a node that was up at that time, per live
  node per second (live node-seconds from the crash and recover rows);
  ``false_episodes`` counts each episode once (SWIM: one per suspected member and
  incarnation, however many members heard of it);
* ``messages_per_node_s`` — messages sent per node per second.

:func:`swim_theory` is the analysis of Das, Gupta & Motivala (2002, §3.1): a failure is first
detected after ``T' / (1 - e^(-q_f))`` on average (``q_f`` the share of non-faulty members;
the exact finite-n form ``1 - (1 - 1/(n-1))^(live)`` is used for the per-period chance), and
a probe of a live member ends in a false suspicion with probability
``(1 - q_ml²) · (1 - q_f · q_ml⁴)^k`` (``q_ml`` = 1 - loss): the direct ping or ack is lost,
and so is every one of the k indirect paths (four messages each, through a live member).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow.dataset as ds

from raysim.analysis.consensus import CONTEXT, summary
from raysim.analysis.figures import PALETTE, short
from raysim.analysis.load import Where, load_events, load_runs, varying_params
from raysim.analysis.section import Part

KNOBS = {
    "detection.heartbeat": "protocol.timeout",
    "detection.eventually_perfect": "protocol.timeout",
    "detection.phi": "protocol.threshold",
    "detection.swim": "protocol.period",
}


def _uptime(crash: np.ndarray, recover: np.ndarray, end: float) -> float:
    """Ticks a node was up in [0, end), from its sorted crash and recover times."""
    down, t_down = 0.0, None
    events = sorted([(t, 0) for t in crash.tolist()] + [(t, 1) for t in recover.tolist()])
    for t, kind in events:
        if kind == 0 and t_down is None:
            t_down = t
        elif kind == 1 and t_down is not None:
            down += t - t_down
            t_down = None
    if t_down is not None:
        down += end - t_down
    return end - down


def _up_at(crash: np.ndarray, recover: np.ndarray, t: float) -> bool:
    last_crash = crash[crash <= t].max() if (crash <= t).any() else -np.inf
    last_rec = recover[recover <= t].max() if (recover <= t).any() else -np.inf
    return not last_crash > last_rec


def detector_measures(
    g: pd.DataFrame, n: int, end: float, swim: bool = False
) -> dict[str, float]:
    """The measures of one run's observation and lifecycle rows ``g`` (see the docstring)."""
    kind = g["kind"].astype(str).to_numpy()
    name = g["name"].astype(str).to_numpy()
    time = g["time"].to_numpy(dtype=float)
    node = g["node"].to_numpy()
    peer = g["peer"].to_numpy()
    value = g["value"].to_numpy(dtype=float)
    crashes = {i: np.sort(time[(kind == "crash") & (node == i)]) for i in range(n)}
    recovers = {i: np.sort(time[(kind == "recover") & (node == i)]) for i in range(n)}
    out: dict[str, float] = {}
    sus = (kind == "obs") & (name == "suspect")
    first = [(crashes[i][0], i) for i in range(n) if len(crashes[i])]
    out.update(detect_first=np.nan, detect_all=np.nan, know_all=np.nan, dead_all=np.nan)
    if first:
        tc, c = min(first)
        rec = recovers[c][recovers[c] > tc]
        until = rec[0] if len(rec) else np.inf
        watchers = [i for i in range(n) if i != c and _up_at(crashes[i], recovers[i], tc)
                    and not ((crashes[i] > tc) & (crashes[i] < end)).any()]

        trust = (kind == "obs") & (name == "trust")

        def firsts(mask: np.ndarray) -> dict[int, float]:
            """Per watcher, when it first held ``c`` suspect (or dead) from the crash on; a
            watcher whose suspicion began before the crash and still held counts at tc."""
            got: dict[int, float] = {}
            before = (mask | trust) & (peer == c) & (time < tc)
            for nd, is_trust in zip(node[before].tolist(), trust[before].tolist(),
                                    strict=True):
                if is_trust:
                    got.pop(int(nd), None)
                else:
                    got[int(nd)] = tc
            m = mask & (peer == c) & (time >= tc) & (time < until)
            for t, nd in zip(time[m].tolist(), node[m].tolist(), strict=True):
                got.setdefault(int(nd), t)
            return got

        s = firsts(sus)
        if s:
            out["detect_first"] = min(s.values()) - tc
        if watchers and all(w in s for w in watchers):
            out["detect_all"] = max(s[w] for w in watchers) - tc
        dead = (kind == "obs") & (name == "dead")
        k = firsts(sus | dead)
        if watchers and all(w in k for w in watchers):
            out["know_all"] = max(k[w] for w in watchers) - tc
        d = firsts(dead)
        if d and watchers and all(w in d for w in watchers):
            out["dead_all"] = max(d[w] for w in watchers) - tc
    live_s = sum(_uptime(crashes[i], recovers[i], end) for i in range(n)) / 1000.0
    false = [j for j in np.flatnonzero(sus).tolist()
             if _up_at(crashes[int(peer[j])], recovers[int(peer[j])], time[j])]
    out["false_suspicions"] = len(false) / live_s if live_s else np.nan
    episodes = {(int(peer[j]), float(value[j])) for j in false} if swim else set(false)
    out["false_episodes"] = len(episodes) / live_s if live_s else np.nan
    return out


def detector_runs(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run of a detection protocol: parameters, measures, messages per node/s."""
    if runs is None:
        runs = load_runs(where)
    runs = runs[runs["protocol"].astype(str).str.startswith("detection.")].reset_index(drop=True)
    if not len(runs):
        return pd.DataFrame()
    flt = ds.field("kind").isin(["obs", "crash", "recover"])
    ev = load_events(where, ["run_id", "time", "kind", "node", "peer", "name", "value"], flt,
                     runs=runs)
    rows = []
    by_id = runs.set_index("run_id")
    for run_id, g in ev.groupby("run_id", sort=True):
        r: pd.Series = by_id.loc[run_id]  # type: ignore[assignment]
        end = float(r["end_time"])
        g = g.sort_values(["time", "node"], kind="stable")
        m = detector_measures(g, int(r["network.nodes"]), end,
                              swim=str(r["protocol"]) == "detection.swim")
        m["messages_per_node_s"] = float(r["sent"]) / float(r["network.nodes"]) / (end / 1000.0)
        rows.append({"run_id": run_id, **m})
    knob = [
        float(r[KNOBS[str(r["protocol"])]]) if KNOBS.get(str(r["protocol"]), "") in r else np.nan
        for _, r in runs.iterrows()
    ]
    runs = runs.assign(knob=knob)
    keep = ["run_id", "protocol", "seed", "knob", *CONTEXT, *varying_params(runs)]
    return runs[[c for c in dict.fromkeys(keep) if c in runs]].merge(pd.DataFrame(rows),
                                                                     on="run_id")


def swim_theory(n: int, crashed: int, loss: float, k: int, period: float) -> dict[str, float]:
    """SWIM's expected first-detection time (ticks) and false suspicions per node per second."""
    q_f = (n - crashed) / n
    q_ml = 1.0 - loss
    live = n - crashed
    p_pick = 1.0 - (1.0 - 1.0 / (n - 1)) ** live
    fp = (1.0 - q_ml**2) * (1.0 - q_f * q_ml**4) ** k
    return {
        "detect_first": period / p_pick,
        "detect_first_asymptotic": period / (1.0 - math.exp(-q_f)),
        "false_episodes": fp / (period / 1000.0),
    }


# --- figures -----------------------------------------------------------------------------------


def fig_tradeoff(frame: pd.DataFrame, x: str = "false_episodes", y: str = "detect_first",
                 theory: bool = True, title: str = "") -> go.Figure:
    """Detection time against false-suspicion rate, one curve per detector and loss.

    Each point is one knob value (timeout, φ threshold or SWIM period), mean over seeds with
    95 % confidence bars on both axes. Dotted: SWIM's analytic values for its periods.
    """
    fig = go.Figure()
    color_by = [c for c in ("protocol", "faults.loss", "network.delay.dist") if c in frame]
    for i, (key, g) in enumerate(frame.groupby(color_by, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        sx = summary(g, ["knob"], [x]).set_index("knob")
        sy = summary(g, ["knob"], [y]).set_index("knob")
        knobs = sorted(sx.index)
        name = ", ".join(f"{short(c)}={v}" for c, v in zip(color_by, key, strict=True))
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=[sx.loc[k, "mean"] for k in knobs], y=[sy.loc[k, "mean"] for k in knobs],
            mode="lines+markers", name=name, line={"color": color},
            text=[f"knob={k:g}" for k in knobs],
            error_x={"type": "data", "symmetric": False,
                     "array": [sx.loc[k, "hi"] - sx.loc[k, "mean"] for k in knobs],
                     "arrayminus": [sx.loc[k, "mean"] - sx.loc[k, "lo"] for k in knobs]},
            error_y={"type": "data", "symmetric": False,
                     "array": [sy.loc[k, "hi"] - sy.loc[k, "mean"] for k in knobs],
                     "arrayminus": [sy.loc[k, "mean"] - sy.loc[k, "lo"] for k in knobs]}))
        if theory and str(key[0]) == "detection.swim" and "faults.loss" in color_by:
            loss = float(key[color_by.index("faults.loss")])  # type: ignore[arg-type]
            n = int(g["network.nodes"].iloc[0]) if "network.nodes" in g else 12
            kk = int(g["protocol.k"].iloc[0]) if "protocol.k" in g else 3
            th = [swim_theory(n, 1, loss, kk, k) for k in knobs]
            fig.add_trace(go.Scatter(
                x=[t["false_episodes"] for t in th], y=[t["detect_first"] for t in th],
                mode="lines+markers", line={"color": color, "dash": "dot"},
                marker={"symbol": "x"}, name=f"SWIM analysis, loss={loss:g}"))
    fig.update_layout(
        title=title or "Detection time against false suspicions (each point: one timeout, "
        "threshold or period)", template="plotly_white", height=480,
        xaxis={"title": "false suspicions per live node per second", "type": "log"},
        yaxis={"title": "ticks (ms) from the crash to the first suspicion", "type": "log"})
    return fig


# --- report ----------------------------------------------------------------------------------


def section(where: Where, runs: pd.DataFrame) -> list[Part]:
    """The report's failure-detector section: the trade-off curve and a summary table."""
    frame = detector_runs(where, runs)
    if not len(frame):
        return []
    by: Sequence[str] = [
        c for c in ("protocol", "knob", "faults.loss", "network.delay.dist") if c in frame
    ]
    values = ["detect_first", "detect_all", "know_all", "false_suspicions", "false_episodes",
              "messages_per_node_s"]
    table = frame.groupby(list(by))[values].mean().reset_index().round(3)
    return [
        Part("Failure detectors: detection time against false suspicions",
             "After the crash of one node: time to its first suspicion (by anyone); false "
             "suspicions of live nodes per live node per second (an episode counted once). "
             "Each point is one setting of the detector's knob (heartbeat and ◇P: timeout; "
             "φ: threshold; SWIM: protocol period), mean over seeds with 95 % bars. Dotted: "
             "SWIM's analysis (Das, Gupta & Motivala 2002, §3.1), which ignores delays and "
             "counts a detection at the probe rather than at the end of the probing period.",
             fig_tradeoff(frame), figure_id="fig-detect-tradeoff"),
        Part("Failure detectors: means over seeds",
             "Ticks; rates per node per second. detect_all: until every live node suspected "
             "the crashed one; know_all: until every live node had it as suspect or dead "
             "(SWIM's dissemination).",
             table=table),
    ]
