"""``raysim bench``: fixed workloads, one JSON line each, for the README's performance table.

Workloads (targets for a 2-core machine are in the README):

- ``gossip_push_pull``: push-pull dissemination to every node, 10^4 and 10^5 nodes, on the
  local backend and on Ray with 2 shards;
- ``averaging``: push-pull averaging on a static random overlay (k = 20), 10^5 nodes, 30
  rounds at random phases, delays uniform in 5-20 % of a round: ~3 M timers, ~6 M messages;
  local, and Ray with 2 shards under both router placements;
- ``naive``: the one-Ray-actor-per-node baseline (``shard_size = 1``), 50 nodes;
- ``ring`` and ``vector_clock``: the toolkit's value types (see ``raysim.bench_toolkit``);
- ``gossip_reference``: the per-node twin of ``gossip_push_pull`` (``gossip.reference``),
  10^4 and 10^5 nodes, local: the per-node driver's speed;
- ``chord``: ``experiments/chord_hops.toml``'s first run (iterative lookups, 1024 nodes,
  per-node), local;
- ``cycle``: cycle-driven averaging (every node's rounds at multiples of the period,
  ``phase = "lockstep"``), columnar, 10^5 and 10^6 nodes, observation log only;
- ``scaling`` (only with ``--only scaling``): a fixed 10^6-node cycle-driven workload on Ray
  at 1, 2, 4, ... shards up to the machine's cores, with speed-up and efficiency against
  the local backend.

Every workload writes its full event log (``log.level = "all"``) to a temporary directory,
since logging is part of the cost being measured. Wall time covers the whole run (shard
actors' start-up included) but not ``ray.init``, which a session pays once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raysim.errors import ConfigError
from raysim.experiments.config import ExperimentConfig, validate
from raysim.experiments.runner import run
from raysim.runtime.backends import ensure_ray

WORKLOADS = (
    "gossip_push_pull",
    "averaging",
    "naive",
    "ring",
    "vector_clock",
    "gossip_reference",
    "chord",
    "cycle",
)
EXTRA_WORKLOADS = ("scaling",)  # not in the default set: minutes of Ray runs


def gossip_config(nodes: int) -> ExperimentConfig:
    """Push-pull dissemination until every node is informed."""
    return validate(
        {
            "experiment": {
                "name": "bench_gossip",
                "protocol": "gossip.push_pull",
                "seed": 7,
                "duration": 200_000,
                "stop_when": "informed",
            },
            "protocol": {"period": 1000, "phase": "random"},
            "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 50, "high": 200}},
        },
        "bench",
    )


def averaging_config(nodes: int, rounds: int = 30) -> ExperimentConfig:
    """Push-pull averaging on a k = 20 random overlay for ``rounds`` rounds."""
    return validate(
        {
            "experiment": {
                "name": "bench_averaging",
                "protocol": "gossip.average",
                "seed": 7,
                "duration": rounds * 1000 + 1,
            },
            "protocol": {"period": 1000, "phase": "random"},
            "network": {
                "nodes": nodes,
                "topology": "random",
                "degree": 20,
                "delay": {"dist": "uniform", "low": 50, "high": 200},
            },
        },
        "bench",
    )


def _gossip_data(nodes: int, protocol: str) -> dict[str, Any]:
    return {
        "experiment": {
            "name": "bench_gossip",
            "protocol": protocol,
            "seed": 7,
            "duration": 200_000,
            "stop_when": "informed",
        },
        "protocol": {"period": 1000, "phase": "random"},
        "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 50, "high": 200}},
    }


def reference_config(nodes: int) -> ExperimentConfig:
    """:func:`gossip_config`'s workload on the per-node twin protocol ``gossip.reference``."""
    return validate(_gossip_data(nodes, "gossip.reference"), "bench")


def chord_config() -> ExperimentConfig:
    """The first run of ``experiments/chord_hops.toml``: iterative lookups on 1024 nodes."""
    return validate(
        {
            "experiment": {
                "name": "bench_chord",
                "protocol": "chord",
                "seed": 1,
                "duration": "60s",
            },
            "protocol": {"mode": "iterative", "lookup_rate": 0.2},
            "network": {"nodes": 1024, "delay": {"dist": "uniform", "low": 20, "high": 100}},
            "log": {"level": "all"},
        },
        "bench",
    )


def cycle_config(nodes: int, rounds: int = 30) -> ExperimentConfig:
    """Cycle-driven averaging: every node's rounds at multiples of the period (lockstep).

    Observation log only (``log.level = "observations"``), as PeerSim's cycle-driven runs
    keep no per-message trace.
    """
    return validate(
        {
            "experiment": {
                "name": "bench_cycle",
                "protocol": "gossip.average",
                "seed": 7,
                "duration": rounds * 1000 + 1,
            },
            "protocol": {"period": 1000, "phase": "lockstep"},
            "network": {
                "nodes": nodes,
                "topology": "random",
                "degree": 20,
                "delay": {"dist": "uniform", "low": 50, "high": 200},
            },
            "log": {"level": "observations"},
        },
        "bench",
    )


def measure(
    workload: str,
    cfg: ExperimentConfig,
    backend: str,
    shards: int | None = None,
    shard_size: int | None = None,
    router: str = "shard",
) -> dict[str, Any]:
    """Run one configuration with its full event log and report its speed."""
    if backend == "ray":
        ensure_ray()  # Ray's own start-up (~4-6 s here) is not part of the workload
    with tempfile.TemporaryDirectory(prefix="raysim-bench-") as tmp:
        t0 = time.perf_counter()
        res = run(cfg, Path(tmp), backend, shards, shard_size, router)
        wall = time.perf_counter() - t0
    row = res.row
    if res.status != "ok":
        raise RuntimeError(res.error)
    events = row["delivered"] + row["timers"]
    period = cfg.protocol.get("period", 1000)
    return {
        "workload": workload,
        "backend": backend,
        "router": row["router"],
        "shards": row["shards"],
        "nodes": row["nodes"],
        "rounds": round(row["end_time"] / period, 2),
        "delivered": row["delivered"],
        "timers": row["timers"],
        "events_logged": row["events_logged"],
        "wall_s": round(wall, 3),
        "delivered_per_s": round(row["delivered"] / wall),
        "events_per_s": round(events / wall),
        "peak_rss_mib": round(row["peak_rss_mib"], 1),
    }


def run_all(only: list[str] | None = None, quick: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the result line of every selected workload, in order."""
    chosen = list(only or WORKLOADS)
    allowed = WORKLOADS + EXTRA_WORKLOADS
    bad = [w for w in chosen if w not in allowed]
    if bad:
        raise ConfigError(f"--only {bad[0]!r}: unknown workload; allowed: {', '.join(allowed)}")
    big = 10_000 if quick else 100_000
    if "gossip_push_pull" in chosen:
        for n in (big // 10, big):
            yield measure("gossip_push_pull", gossip_config(n), "local")
            yield measure("gossip_push_pull", gossip_config(n), "ray", shards=2)
    if "averaging" in chosen:
        cfg = averaging_config(big, rounds=5 if quick else 30)
        yield measure("averaging", cfg, "local")
        yield measure("averaging", cfg, "ray", shards=2, router="shard")
        yield measure("averaging", cfg, "ray", shards=2, router="actor")
    if "naive" in chosen:
        yield measure("naive", gossip_config(50), "ray", shard_size=1)
    yield from run_per_node(chosen, quick)
    if "cycle" in chosen:
        for n in (big, big * 10):
            yield measure("cycle", cycle_config(n, rounds=5 if quick else 30), "local")
    if "scaling" in chosen:
        yield from run_scaling(big * 10, rounds=3 if quick else 10)
    if "ring" in chosen or "vector_clock" in chosen:
        from raysim import bench_toolkit

        if "ring" in chosen:
            yield bench_toolkit.bench_ring()
        if "vector_clock" in chosen:
            yield bench_toolkit.bench_vector_clock_merge()


def run_per_node(chosen: list[str], quick: bool = False) -> Iterator[dict[str, Any]]:
    """The per-node driver's workloads: ``gossip_reference`` and ``chord`` (local)."""
    if "gossip_reference" in chosen:
        for n in (1_000, 10_000) if quick else (10_000, 100_000):
            yield measure("gossip_reference", reference_config(n), "local")
    if "chord" in chosen:
        yield measure("chord", chord_config(), "local")


def run_scaling(nodes: int = 1_000_000, rounds: int = 10) -> Iterator[dict[str, Any]]:
    """A fixed cycle-driven workload on Ray at 1, 2, 4, ... shards (up to the cores).

    Each line adds ``speedup`` (local wall time / this wall time) and ``efficiency``
    (speed-up / shards); the first line is the local backend itself.
    """
    import os

    cfg = cycle_config(nodes, rounds)
    base = measure("scaling", cfg, "local")
    base.update(speedup=1.0, efficiency=1.0)
    yield base
    cores = os.cpu_count() or 1
    shards = 1
    while shards <= cores:
        row = measure("scaling", cfg, "ray", shards=shards)
        speedup = base["wall_s"] / row["wall_s"]
        row.update(speedup=round(speedup, 3), efficiency=round(speedup / shards, 3))
        yield row
        shards *= 2
