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
from raysim.protocols.gossip.dissemination import round_of


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


def synchronous_model(mode: str, n: int, runs: int, seed: int) -> np.ndarray:
    """Rounds to inform all n nodes in the textbook synchronous-round model, fanout 1.

    Independent of raysim: each round every node picks one uniform peer other than itself;
    push: informed callers inform their peer; pull: a caller whose peer is informed learns;
    push-pull: both. Everything uses the state at the start of the round. One row per run.
    """
    rng = np.random.default_rng(seed)
    informed = np.zeros((runs, n), dtype=bool)
    informed[:, 0] = True
    rounds = np.zeros(runs, dtype=np.int64)
    row = np.repeat(np.arange(runs)[:, None], n, axis=1)
    r = 0
    while not informed.all():
        r += 1
        peer = rng.integers(0, n - 1, size=(runs, n))
        peer += peer >= np.arange(n)  # uniform over the other n - 1 nodes
        new = informed.copy()
        if mode in ("push", "push_pull"):
            new[row[informed], peer[informed]] = True
        if mode in ("pull", "push_pull"):
            new |= informed[row, peer]
        rounds[new.all(axis=1) & ~informed.all(axis=1)] = r
        informed = new
    return rounds


@pytest.mark.parametrize("nodes", [100, 1000])
@pytest.mark.parametrize("mode", ["push", "pull", "push_pull"])
def test_synchronous_phase_matches_the_synchronous_round_model(
    tmp_path: Path, mode: str, nodes: int
) -> None:
    """phase = "synchronous": rounds to full over 200 seeds, against the numpy model's mean.

    Delays of 400–499 ticks in a 1000-tick period put requests and replies late in the
    round, where the other phases let earlier news leak into answers.
    """
    seeds = 200
    sim = []
    for seed in range(seeds):
        cfg = validate(
            {
                "experiment": {
                    "name": "sync",
                    "protocol": "gossip",
                    "seed": seed,
                    "duration": 200_000,
                    "stop_when": "informed",
                },
                "protocol": {"mode": mode, "phase": "synchronous", "period": 1000},
                "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 400, "high": 499}},
                "log": {"level": "none"},
            },
            "test",
        )
        res = run(cfg, tmp_path, write_row=False)
        assert res.row["informed_nodes"] == nodes
        sim.append(res.metrics["rounds_to_full"])
        assert res.metrics["rounds_to_full"] == round_of(
            res.row["informed_time"], 1000, "synchronous"
        )
    model = synchronous_model(mode, nodes, 2000, seed=nodes)
    sim_a = np.array(sim)
    se = math.sqrt(sim_a.var(ddof=1) / len(sim_a) + model.var(ddof=1) / len(model))
    assert abs(sim_a.mean() - model.mean()) < 3 * se, (sim_a.mean(), model.mean(), se)


def test_lockstep_push_pull_is_faster_than_the_synchronous_model(tmp_path: Path) -> None:
    """What lockstep is not: replies carry news learned earlier in the round (issue 13)."""
    rounds = {}
    for phase in ("lockstep", "synchronous"):
        vals = []
        for seed in range(30):
            cfg = validate(
                {
                    "experiment": {"name": "ls", "protocol": "gossip", "seed": seed,
                                   "duration": 200_000, "stop_when": "informed"},
                    "protocol": {"mode": "push_pull", "phase": phase, "period": 1000},
                    "network": {"nodes": 1000,
                                "delay": {"dist": "uniform", "low": 10, "high": 100}},
                    "log": {"level": "none"},
                },
                "test",
            )
            vals.append(run(cfg, tmp_path, write_row=False).metrics["rounds_to_full"])
        rounds[phase] = statistics.mean(vals)
    assert rounds["lockstep"] < rounds["synchronous"] - 0.5, rounds


def test_late_messages_stop_a_synchronous_run(tmp_path: Path) -> None:
    cfg = validate(
        {
            "experiment": {"name": "late", "protocol": "gossip.reference", "seed": 1,
                           "duration": 20_000, "stop_when": "informed"},
            "protocol": {"mode": "push_pull", "phase": "synchronous", "period": 100},
            "network": {"nodes": 20, "delay": {"dist": "uniform", "low": 40, "high": 90}},
            "log": {"level": "none"},
        },
        "test",
    )
    res = run(cfg, tmp_path, write_row=False)
    assert res.status == "failed"
    assert "synchronous rounds need network delays" in (res.error or "")


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


def test_program_order_same_for_sorted_and_shuffled_rows() -> None:
    """The shortcut for a log that is already in (time, node, seq) order gives the ranks a
    sort gives, and a shuffled log is still sorted."""
    from raysim.protocols.gossip.dissemination import _program_order

    rng = np.random.default_rng(3)
    n = 500
    cols = {"time": rng.integers(0, 20, n), "node": rng.integers(0, 5, n),
            "seq": rng.integers(0, 3, n)}
    order = np.lexsort((cols["seq"], cols["node"], cols["time"]))
    ordered = {k: v[order] for k, v in cols.items()} | {"kind": np.array(["obs"] * n)}
    assert np.array_equal(_program_order(ordered), np.arange(n))
    perm = rng.permutation(n)
    shuffled = {k: v[perm] for k, v in ordered.items()}
    rank = _program_order(shuffled)
    assert sorted(rank.tolist()) == list(range(n))
    # the row at each rank has the same (time, node, seq) as the sorted log's row there
    for k in ("time", "node", "seq"):
        back = np.empty(n, dtype=np.int64)
        back[rank] = shuffled[k]
        assert np.array_equal(back, ordered[k])
