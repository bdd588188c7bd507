"""Gossip convergence: fraction informed against round, rounds to 50/99/100 %, messages.

Every gossip node emits the observation ``informed`` once, when it first learns the update;
``protocol.period`` (ticks per round) turns its time into rounds. Two measures of "when":

* milestones (``rounds_to_50`` …, like the run row's ``metric.rounds_to_full``) are integer
  *rounds*: the round in which the node that completed the fraction learned
  (:func:`raysim.protocols.gossip.dissemination.round_of`: ⌊t / period⌋ for lockstep and
  synchronous phases, ⌈t / period⌉ for random phases);
* curves (:func:`convergence_curves`) are against *time in periods*, t / period, a continuous
  axis (the run row's ``metric.periods_to_full`` is the same for the last node).

Curves and milestones are computed per run, then summarised over the runs (seeds) of each
parameter combination: the mean and a 95 % band (see :mod:`raysim.analysis.stats`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from raysim.analysis import theory
from raysim.analysis.load import Where, load_runs, observations, varying_params
from raysim.analysis.stats import Band, band_of, summarize
from raysim.protocols.gossip.dissemination import round_of

FRACTIONS = (0.5, 0.99, 1.0)


def _nodes(runs: pd.DataFrame) -> pd.Series:
    return runs["network.nodes"] if "network.nodes" in runs else runs["nodes"]


def informed_times(where: Where, runs: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """For each run_id, the sorted times (ticks) at which its nodes became informed."""
    runs = load_runs(where) if runs is None else runs
    obs = observations(where, "informed", runs=runs)
    out = {rid: np.array([], dtype=np.int64) for rid in runs["run_id"]}
    for rid, g in obs.groupby("run_id", sort=False):
        out[str(rid)] = np.sort(g["time"].to_numpy())
    return out


def milestones(
    where: Where,
    fractions: Sequence[float] = FRACTIONS,
    runs: pd.DataFrame | None = None,
    times: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per run: its parameters, and ``rounds_to_<pct>`` for each fraction (the
    integer round in which that fraction was reached, see the module docstring; NaN if never
    reached) plus ``messages_per_node`` (messages sent / nodes)."""
    runs = load_runs(where) if runs is None else runs
    times = informed_times(where, runs) if times is None else times
    out = runs.copy()
    n = _nodes(runs).to_numpy()
    period = runs["protocol.period"].to_numpy(dtype=np.int64)
    if "protocol.phase" in runs:
        phase = runs["protocol.phase"].fillna("random").astype(str).to_numpy()
    else:
        phase = np.full(len(runs), "random")
    for f in fractions:
        vals: list[float] = []
        for i, rid in enumerate(runs["run_id"]):
            t = times.get(rid, np.array([]))
            k = math.ceil(f * n[i] - 1e-9)
            ok = 0 < k <= len(t)
            vals.append(float(round_of(t[k - 1], int(period[i]), phase[i])) if ok else math.nan)
        out[milestone_column(f)] = vals
    out["messages_per_node"] = runs["sent"].to_numpy(dtype=float) / n
    return out


def milestone_column(fraction: float) -> str:
    """``rounds_to_50``, ``rounds_to_99``, ``rounds_to_100`` …"""
    return f"rounds_to_{round(fraction * 100, 6):g}"


def milestone_summary(
    per_run: pd.DataFrame,
    by: Sequence[str] | None = None,
    fractions: Sequence[float] = FRACTIONS,
    band: Band = "ci",
) -> pd.DataFrame:
    """Mean and 95 % band over seeds of each milestone and of messages per node."""
    by = varying_params(per_run) if by is None else list(by)
    cols = [milestone_column(f) for f in fractions] + ["messages_per_node"]
    return summarize(per_run, by, cols, band)


def convergence_curves(
    where: Where,
    by: Sequence[str] | None = None,
    step: float = 0.25,
    band: Band = "ci",
    runs: pd.DataFrame | None = None,
    times: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Fraction of nodes informed against time in periods, per parameter combination.

    Columns: ``*by, round, mean, lo, hi, n`` (n = runs averaged); ``round`` is time / period
    (continuous, not the integer round of :func:`milestones`). ``by`` defaults to the
    parameters that vary across the runs. Each run's curve is evaluated on a grid of
    ``step`` rounds from 0 to the last round any run of its group needed.
    """
    runs = load_runs(where) if runs is None else runs
    by = varying_params(runs) if by is None else list(by)
    times = informed_times(where, runs) if times is None else times
    frames = []
    groups = runs.groupby(by, sort=True, dropna=False) if by else [((), runs)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        period = g["protocol.period"].to_numpy(dtype=float)
        n = _nodes(g).to_numpy(dtype=float)
        last = max((times[r][-1] / p for r, p in zip(g["run_id"], period, strict=True)
                    if len(times.get(r, ()))), default=0.0)
        grid = np.arange(0.0, math.ceil(last / step) * step + step / 2, step)
        matrix = np.array([
            np.searchsorted(times.get(r, np.array([])), grid * p, side="right") / nodes
            for r, p, nodes in zip(g["run_id"], period, n, strict=True)
        ])
        mean, lo, hi, cnt = band_of(matrix, band, axis=0)
        frame = pd.DataFrame({"round": grid, "mean": mean, "lo": np.clip(lo, 0, 1),
                              "hi": np.clip(hi, 0, 1), "n": cnt})
        for col, val in zip(by, key, strict=True):
            frame[col] = cast(Any, val)
        frames.append(frame[[*by, "round", "mean", "lo", "hi", "n"]])
    if not frames:
        return pd.DataFrame(columns=[*by, "round", "mean", "lo", "hi", "n"])
    return pd.concat(frames, ignore_index=True)


def _mode_loss(row: pd.Series, runs: pd.DataFrame) -> tuple[str | None, float]:
    mode = row.get("protocol.mode")
    if mode is None and "protocol.mode" in runs and runs["protocol.mode"].nunique() == 1:
        mode = runs["protocol.mode"].iloc[0]
    loss = row.get("faults.loss")
    if loss is None:
        loss = runs["faults.loss"].iloc[0] if "faults.loss" in runs else 0.0
    return (str(mode) if mode is not None else None), float(loss)


def theory_curves(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean-field informed fraction per round for each combination in ``curves``.

    Columns: the combination's columns, ``round`` (integers) and ``fraction``.
    """
    by = [c for c in curves.columns if c not in ("round", "mean", "lo", "hi", "n")]
    frames = []
    combos = curves[by].drop_duplicates() if by else pd.DataFrame([{}])
    for _, row in combos.iterrows():
        mode, loss = _mode_loss(row, runs)
        n = int(row["network.nodes"]) if "network.nodes" in row else int(_nodes(runs).iloc[0])
        if mode not in theory.MODES or not 0.0 <= loss < 1.0:
            continue
        sel = curves
        for c in by:
            sel = sel[sel[c] == row[c]]
        rounds = math.ceil(float(sel["round"].max())) if len(sel) else 0
        frac = theory.mean_field(mode, n, loss, rounds=max(rounds, 1))
        frame = pd.DataFrame({"round": np.arange(len(frac), dtype=float), "fraction": frac})
        for c in reversed(by):
            frame.insert(0, c, row[c])
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*by, "round", "fraction"])
    return pd.concat(frames, ignore_index=True)


def theory_milestones(summary: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean-field rounds to each fraction for each combination of ``summary``; and for push,
    Pittel's log₂N + ln N. Columns: combination, ``metric``, ``theory``, ``pittel``."""
    rows = []
    by = [c for c in summary.columns if c not in ("metric", "mean", "lo", "hi", "n")]
    for _, row in summary[summary["metric"].str.startswith("rounds_to_")].iterrows():
        mode, loss = _mode_loss(row, runs)
        if mode not in theory.MODES:
            continue
        n = int(row["network.nodes"]) if "network.nodes" in row else int(_nodes(runs).iloc[0])
        frac = float(row["metric"].removeprefix("rounds_to_")) / 100.0
        pittel = theory.push_rounds(n) if mode == "push" and frac >= 1.0 and loss == 0 else math.nan
        rows.append({**{c: row[c] for c in by}, "metric": row["metric"],
                     "theory": theory.rounds_to_fraction(mode, n, frac, loss), "pittel": pittel})
    return pd.DataFrame(rows, columns=[*by, "metric", "theory", "pittel"])
