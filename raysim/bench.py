"""``raysim bench``: fixed workloads, one JSON line each, for the README's performance table.

Workloads (targets for a 2-core machine are in the README):

- ``gossip_push_pull``: push-pull dissemination to every node, 10^4 and 10^5 nodes, on the
  local backend and on Ray with 2 shards;
- ``averaging``: push-pull averaging on a static random overlay (k = 20), 10^5 nodes, 30
  rounds at random phases, delays uniform in 5-20 % of a round: ~3 M timers, ~6 M messages;
  local, and Ray with 2 shards under both router placements (routing in the shards: over
  the socket mesh, then Ray's task path, ``transport``);
- ``naive``: the one-Ray-actor-per-node baseline (``shard_size = 1``), 50 nodes;
- ``ring`` and ``vector_clock``: the toolkit's value types (see ``raysim.bench_toolkit``);
- ``gossip_reference``: the per-node twin of ``gossip_push_pull`` (``gossip.reference``),
  10^4 and 10^5 nodes, local: the per-node driver's speed;
- ``chord``: ``experiments/chord_hops.toml``'s first run (iterative lookups, 1024 nodes,
  per-node), local;
- ``cycle``: cycle-driven averaging (every node's rounds at multiples of the period,
  ``phase = "lockstep"``), columnar, 10^5 and 10^6 nodes, observation log only;
- ``causality``: the cost of the engine's clocks (``[log] causality`` = ``none``,
  ``lamport``, ``vector``) on push-pull gossip, 100, 1000 and 10^4 nodes for 50, 10 and
  5 rounds (2 in vector mode at 10^4 nodes), local: rows logged per second (wall and CPU)
  and bytes per row of the Parquet log on disk;
- ``startup``: the fixed cost of a small local run (``raysim run`` of 10^3-node push-pull
  gossip, full log: wall time minus its simulation loop) and its parts: interpreter,
  imports, config validation, first window, teardown, exit (see
  :mod:`raysim.bench_startup`, whose runs are fresh processes of their own);
- ``scaling`` (only with ``--only scaling``): a fixed 10^6-node cycle-driven workload on the
  local backend, then on Ray at 1, 2, 4, ... shards up to the machine's cores, with
  ``speedup`` and ``efficiency`` against the local line;
- ``scaling_model`` (only with ``--only scaling_model`` or ``--scaling``): the per-window
  cost workload (``window_cost``: 16 nodes, 1-tick windows, two lengths, local and on Ray
  at 1, 2, 4, ... shards) and the cost of a message crossing shards (``transfer``), then
  one ``scaling_model`` line: :mod:`raysim.bench_model` fitted to the measurements, checked
  against the measured speed-ups and extrapolated to more cores.

Every workload writes its full event log (``log.level = "all"``) to a temporary directory,
since logging is part of the cost being measured. Wall time covers the whole run (shard
actors' start-up included) but not ``ray.init``, which a session pays once.

Each measurement runs in a fresh Python process (``python -m raysim.bench``, with its own
local Ray where it needs one), so ``peak_rss_mib`` is that workload's own peak: the
largest of its driver's resident memory (``driver_peak_rss_mib``) and, on Ray, each shard
or router actor's, never an earlier workload's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from raysim.engine.compiled import hotpath
from raysim.errors import ConfigError
from raysim.experiments.config import ExperimentConfig, validate
from raysim.experiments.runner import run
from raysim.runtime.backends import ensure_ray, peak_rss_mib

WORKLOADS = (
    "gossip_push_pull",
    "averaging",
    "naive",
    "ring",
    "vector_clock",
    "gossip_reference",
    "chord",
    "cycle",
    "causality",
    "startup",
)
# not in the default set: minutes of Ray runs (``raysim bench --scaling`` runs both)
EXTRA_WORKLOADS = ("scaling", "scaling_model")
_MARK = "raysim-bench-result "


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
    keep no per-message trace. Lockstep is raysim's synchronous-round mode: PeerSim's atomic
    in-place exchanges would need one node to read another's state, which a sans-IO
    protocol never does (README, "Cycle-driven runs beside PeerSim").
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


def causality_config(nodes: int, mode: str, rounds: int = 10) -> ExperimentConfig:
    """Push-pull gossip for ``rounds`` rounds with the engine's clocks ``mode``."""
    data = _gossip_data(nodes, "gossip.push_pull")
    data["experiment"].update(name="bench_causality", duration=rounds * 1000, stop_when=None)
    data["log"] = {"causality": mode}
    return validate(data, "bench")


def window_config(duration: int) -> ExperimentConfig:
    """The per-window cost workload: 16 nodes, a 1-tick lookahead, events in 3 of every 4
    ticks (averaging every 4 ticks, lockstep), so a run is ``~0.75·duration`` windows of
    ~16 events each and its wall time is almost all per-window cost."""
    return validate(
        {
            "experiment": {
                "name": "bench_window",
                "protocol": "gossip.average",
                "seed": 7,
                "duration": duration,
            },
            "protocol": {"period": 4, "phase": "lockstep"},
            "network": {"nodes": 16, "delay": {"dist": "constant", "value": 1}},
            "log": {"level": "all"},
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
    transport: str = "auto",
) -> dict[str, Any]:
    """Run one configuration with its full event log and report its speed.

    ``transport`` is how Ray's shards trade windows (see :func:`raysim.runtime.backends.run_ray`).

    ``checks_s`` and ``checks_cpu_s`` are the share of ``wall_s`` and ``cpu_s`` spent in
    the end-of-run safety checks (reading the log back and checking it).

    The ``causality`` workload's lines also give ``rows_per_s`` (rows logged per second),
    ``rows_per_cpu_s`` (over ``cpu_s``, this process's CPU time: the local backend runs
    everything here, and on a shared machine CPU time is what compares) and
    ``bytes_per_row`` (the Parquet event log on disk over its rows).
    """
    if backend == "ray":
        ensure_ray()  # Ray's own start-up (~4-6 s here) is not part of the workload
    windows = 0

    def count(_end: int, _events: int) -> None:
        nonlocal windows
        windows += 1

    with tempfile.TemporaryDirectory(prefix="raysim-bench-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        res = run(
            cfg, Path(tmp), backend, shards, shard_size, router, progress=count,
            transport=transport,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        disk = (
            sum(f.stat().st_size for f in res.events_dir.rglob("*.parquet"))
            if res.events_dir is not None
            else 0
        )
    row = res.row
    if res.status != "ok":
        raise RuntimeError(res.error)
    events = row["delivered"] + row["timers"]
    period = cfg.protocol.get("period", 1000)
    return {
        "workload": workload,
        "backend": backend,
        "router": row["router"],
        "transport": row.get("transport", ""),
        "shards": row["shards"],
        "nodes": row["nodes"],
        "rounds": round(row["end_time"] / period, 2),
        "delivered": row["delivered"],
        "timers": row["timers"],
        "events_logged": row["events_logged"],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),  # this process's threads: the simulation and its log writer
        "checks_s": round(res.checks_seconds, 3),  # the end-of-run checks, part of wall_s
        "checks_cpu_s": round(res.checks_cpu_seconds, 3),  # and part of cpu_s
        "windows": windows,
        "cores": os.cpu_count() or 1,
        "delivered_per_s": round(row["delivered"] / wall),
        "events_per_s": round(events / wall),
        # the simulation alone (the run's ``wall_seconds``: its windows and its log, not
        # the end-of-run checks nor the run's set-up in this process)
        "sim_s": round(row["wall_seconds"], 3),
        "sim_events_per_s": round(events / row["wall_seconds"]),
        "compiled": hotpath() is not None,  # the per-node driver's compiled hot path
        "peak_rss_mib": round(row["peak_rss_mib"], 1),
    } | (
        {
            "causality": cfg.log.causality,
            "rows_per_s": round(row["events_logged"] / wall),
            "rows_per_cpu_s": round(row["events_logged"] / max(cpu, 1e-9)),
            "bytes_per_row": round(disk / max(row["events_logged"], 1), 1),
        }
        if workload == "causality"
        else {}
    )


_CONFIGS: dict[str, Callable[..., ExperimentConfig]] = {
    "gossip": gossip_config,
    "averaging": averaging_config,
    "reference": reference_config,
    "chord": chord_config,
    "cycle": cycle_config,
    "causality": causality_config,
    "window": window_config,
}


def _job_result(job: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement job in this process (the body of the per-workload subprocess)."""
    kind = job["kind"]
    if kind == "ring":
        from raysim import bench_toolkit

        line = bench_toolkit.bench_ring()
    elif kind == "vector_clock":
        from raysim import bench_toolkit

        line = bench_toolkit.bench_vector_clock_merge()
    elif kind == "startup":
        from raysim import bench_startup

        line = bench_startup.bench_startup(*job["args"])
    elif kind == "transfer":
        from raysim.runtime.transfer import measure_transfer

        line = measure_transfer(*job["args"])
    else:
        cfg = _CONFIGS[kind](*job["args"])
        line = measure(job["workload"], cfg, **job["run"])  # peak: driver's or an actor's
    line["driver_peak_rss_mib"] = round(peak_rss_mib(), 1)
    line["peak_rss_mib"] = max(line["driver_peak_rss_mib"], line.get("peak_rss_mib", 0.0))
    return line


def _in_subprocess(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter, so its peak memory is its own."""
    env = dict(os.environ)
    # NOTE: the naive workload starts ~50 actor processes at once, and Ray's raylet warns
    # ("N PYTHON worker processes have been started ...") at every 4x of its soft limit of
    # workers; that many processes is the point of the baseline, so the limit is raised in
    # the workload's own Ray instead of filtering its output.
    env.setdefault("RAY_num_workers_soft_limit", "1000")
    proc = subprocess.run(
        [sys.executable, "-m", "raysim.bench", json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench workload {job['workload']!r} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    return result


def jobs(only: list[str] | None = None, quick: bool = False) -> list[dict[str, Any]]:
    """The measurements of the selected workloads, in order (one subprocess each)."""
    chosen = list(only or WORKLOADS)
    allowed = WORKLOADS + EXTRA_WORKLOADS
    bad = [w for w in chosen if w not in allowed]
    if bad:
        raise ConfigError(f"--only {bad[0]!r}: unknown workload; allowed: {', '.join(allowed)}")
    big = 10_000 if quick else 100_000
    out: list[dict[str, Any]] = []

    def add(workload: str, kind: str, args: list[Any], **run: Any) -> None:
        out.append({"workload": workload, "kind": kind, "args": args, "run": run})

    if "gossip_push_pull" in chosen:
        for n in (big // 10, big):
            add("gossip_push_pull", "gossip", [n], backend="local")
            add("gossip_push_pull", "gossip", [n], backend="ray", shards=2)
    if "averaging" in chosen:
        rounds = 5 if quick else 30
        add("averaging", "averaging", [big, rounds], backend="local")
        add("averaging", "averaging", [big, rounds], backend="ray", shards=2, router="shard")
        add("averaging", "averaging", [big, rounds], backend="ray", shards=2, router="shard",
            transport="tasks")
        add("averaging", "averaging", [big, rounds], backend="ray", shards=2, router="actor")
    if "naive" in chosen:
        add("naive", "gossip", [50], backend="ray", shard_size=1)
    for toolkit in ("ring", "vector_clock"):
        if toolkit in chosen:
            add(toolkit, toolkit, [])
    if "gossip_reference" in chosen:
        for n in (1_000, 10_000) if quick else (10_000, 100_000):
            add("gossip_reference", "reference", [n], backend="local")
    if "chord" in chosen:
        add("chord", "chord", [], backend="local")
    if "cycle" in chosen:
        for n in (big, big * 10):
            add("cycle", "cycle", [n, 5 if quick else 30], backend="local")
    if "causality" in chosen:
        # ~5 rows per node and round; vector mode at 10^4 nodes: 2 rounds (80 KB a row raw)
        sizes = {100: 50, 1_000: 10, 10_000: 5}
        for n, rounds in sizes.items():
            for mode in ("none", "lamport", "vector"):
                r = 2 if (mode == "vector" and n >= 10_000) else rounds
                add("causality", "causality", [n, mode, 3 if quick else r], backend="local")
            if quick and n >= 1_000:
                break
    if "startup" in chosen:
        add("startup", "startup", [])
    if "scaling" in chosen:
        out.extend(scaling_jobs(big * 10, rounds=3 if quick else 10))
    if "scaling_model" in chosen:
        out.extend(window_jobs((301, 901) if quick else (1_001, 3_001)))
        out.append({"workload": "transfer", "kind": "transfer", "args": [], "run": {}})
    return out


def window_jobs(lengths: tuple[int, ...] = (1_001, 3_001)) -> list[dict[str, Any]]:
    """The per-window cost workload at two lengths, locally and on Ray at 1, 2, 4, ...
    shards up to the machine's cores (the slope of wall time against windows is the cost
    of a window; the intercept, the fixed start-up)."""
    out = []
    for run_ in [{"backend": "local"}, *_ray_layouts()]:
        for n in lengths:
            out.append({"workload": "window_cost", "kind": "window", "args": [n], "run": run_})
    return out


def _ray_layouts() -> list[dict[str, Any]]:
    shards, cores = 1, os.cpu_count() or 1
    out = []
    while shards <= cores:
        out.append({"backend": "ray", "shards": shards})
        shards *= 2
    return out


def scaling_jobs(nodes: int = 1_000_000, rounds: int = 10) -> list[dict[str, Any]]:
    """The scaling workload: ``cycle`` at ``nodes`` locally, then on Ray at 1, 2, 4, ...
    shards up to the machine's cores."""
    args = [nodes, rounds]
    out = [{"workload": "scaling", "kind": "cycle", "args": args, "run": {"backend": "local"}}]
    for run_ in _ray_layouts():
        out.append({"workload": "scaling", "kind": "cycle", "args": args, "run": run_})
    return out


def with_speedup(lines: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Add ``speedup`` (local wall / this wall) and ``efficiency`` (speed-up / shards) to
    the scaling workload's lines; the first scaling line is the local one."""
    local: float | None = None
    for line in lines:
        if line.get("workload") == "scaling":
            if local is None:
                local = line["wall_s"]
            speedup = local / line["wall_s"]
            shards = line["shards"] if line["backend"] == "ray" else 1
            line.update(speedup=round(speedup, 3), efficiency=round(speedup / shards, 3))
        yield line


def run_all(only: list[str] | None = None, quick: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the result line of every selected workload, in order, each from its own process.

    With ``scaling_model`` selected, the last line is the model of
    :mod:`raysim.bench_model` fitted to the lines before it (it needs ``scaling`` too).
    """
    seen: list[dict[str, Any]] = []
    for line in with_speedup(_in_subprocess(job) for job in jobs(only, quick)):
        seen.append(line)
        yield line
    if "scaling_model" in (only or ()):
        from raysim import bench_model

        yield bench_model.report(seen)


if __name__ == "__main__":
    print(_MARK + json.dumps(_job_result(json.loads(sys.argv[1]))), flush=True)
