"""Gossip against the epidemic literature, and push-pull averaging's variance decay."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysim.experiments.config import validate
from raysim.experiments.runner import run


def rounds_to_full(
    tmp_path: Path, mode: str, seed: int, nodes: int = 1000, loss: float = 0.0
) -> int:
    cfg = validate(
        {
            "experiment": {
                "name": "g",
                "protocol": "gossip",
                "seed": seed,
                "duration": 200_000,
                "stop_when": "informed",
            },
            "protocol": {"mode": mode, "phase": "lockstep", "period": 1000},
            "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 10, "high": 100}},
            "faults": {"loss": loss},
            "log": {"level": "none"},
        },
        "test",
    )
    res = run(cfg, tmp_path)
    assert res.row["informed_nodes"] == nodes
    # Round r fires at r·period; the last node learns during the round that reached it.
    return int(res.row["informed_time"] // 1000)


def test_push_matches_pittel(tmp_path: Path) -> None:
    """Push, fanout 1, synchronous rounds: log2 N + ln N + O(1) rounds (Pittel 1987)."""
    rounds = [rounds_to_full(tmp_path, "push", seed) for seed in range(10)]
    predicted = math.log2(1000) + math.log(1000)  # 16.87
    assert abs(statistics.mean(rounds) - predicted) < 2.0, rounds


def test_push_pull_is_fastest_then_pull_then_push(tmp_path: Path) -> None:
    """Karp et al. 2000: push-pull needs log3 N + O(log log N) rounds; pull beats push's tail."""
    mean = {
        m: statistics.mean(rounds_to_full(tmp_path, m, s) for s in range(5))
        for m in ("push", "pull", "push_pull")
    }
    assert mean["push_pull"] < mean["pull"] < mean["push"]
    assert math.log(1000, 3) <= mean["push_pull"] <= math.log(1000, 3) + 3


def test_loss_slows_dissemination_but_everyone_learns(tmp_path: Path) -> None:
    clean = statistics.mean(rounds_to_full(tmp_path, "push", s, nodes=300) for s in range(4))
    lossy = statistics.mean(
        rounds_to_full(tmp_path, "push", s, nodes=300, loss=0.3) for s in range(4)
    )
    assert lossy > clean


@pytest.mark.parametrize("protocol", ["gossip.average", "gossip.average.reference"])
def test_averaging_variance_shrinks_by_about_a_third_per_round(
    tmp_path: Path, protocol: str
) -> None:
    """Jelasity et al. 2005: variance falls by ~1/(2·sqrt(e)) ≈ 0.30 per round (full membership)."""
    cfg = validate(
        {
            "experiment": {"name": "avg", "protocol": protocol, "seed": 5, "duration": 12_001},
            "protocol": {"period": 1000, "phase": "random"},
            "network": {"nodes": 2000, "delay": {"dist": "uniform", "low": 10, "high": 60}},
            "log": {"level": "observations"},
        },
        "test",
    )
    res = run(cfg, tmp_path)
    assert res.events_dir is not None
    obs = pd.read_parquet(res.events_dir, columns=["time", "name", "value"])
    obs = obs[obs["name"] == "value"]
    by_round = obs.groupby(obs["time"] // 1000)["value"]
    var = by_round.var().to_numpy()
    mean = by_round.mean().to_numpy()
    factors = var[3:11] / var[2:10]
    assert 0.2 < float(np.exp(np.log(factors).mean())) < 0.45, factors
    assert abs(mean[-1] - mean[1]) < 0.01  # the mass is (nearly) conserved
