"""Push-pull averaging: the variance of the nodes' values per round.

Each ``gossip.average`` node emits ``value`` at the start of each of its rounds; the k-th
round of a node spans times ``k·period + 1 … (k+1)·period`` (random phase) or ends at
``(k+1)·period`` (lock-step), so ``(time − 1) // period`` is the round. Only rounds in which
every node reported are kept (the run's last round may be cut short).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from raysim.analysis import theory
from raysim.analysis.load import Where, load_runs, observations, varying_params
from raysim.analysis.stats import Band, band_of


def variance_per_round(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, round): ``run_id, round, variance, mean, nodes``."""
    runs = load_runs(where) if runs is None else runs
    obs = observations(where, "value", params=["protocol.period"], runs=runs)
    if not len(obs):
        return pd.DataFrame(columns=["run_id", "round", "variance", "mean", "nodes"])
    obs["round"] = (obs["time"] - 1) // obs["protocol.period"].astype("int64")
    per = obs.groupby(["run_id", "round"], sort=True)["value"].agg(
        variance=lambda v: float(np.var(v.to_numpy())), mean="mean", nodes="size"
    ).reset_index()
    full = per.groupby("run_id")["nodes"].transform("max")
    return per[per["nodes"] == full].reset_index(drop=True)


def variance_summary(
    where: Where,
    by: Sequence[str] | None = None,
    band: Band = "ci",
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean and 95 % band over seeds of the variance per round, per parameter combination.

    Columns: ``*by, round, mean, lo, hi, n, theory`` where ``theory`` is the round-0 mean
    times (1/(2√e))^round (Jelasity et al. 2005).
    """
    runs = load_runs(where) if runs is None else runs
    by = varying_params(runs) if by is None else list(by)
    per = variance_per_round(where, runs).merge(runs[["run_id", *by]], on="run_id")
    rows = []
    for key, g in (per.groupby(by, sort=True, dropna=False) if by else [((), per)]):
        key = key if isinstance(key, tuple) else (key,)
        start = None
        for _, h in g.groupby("round", sort=True):
            rnd = int(h["round"].iloc[0])
            mean, lo, hi, n = band_of(h["variance"].to_numpy(), band)
            start = float(mean) if start is None else start
            pred = float(theory.averaging_variance(rnd, start)[-1])
            rows.append({**dict(zip(by, key, strict=True)), "round": rnd, "mean": float(mean),
                         "lo": max(float(lo), 0.0), "hi": float(hi), "n": int(n), "theory": pred})
    return pd.DataFrame(rows, columns=[*by, "round", "mean", "lo", "hi", "n", "theory"])
