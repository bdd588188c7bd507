"""The ``startup`` workload of ``raysim bench``: the fixed cost of a small local run.

A ``raysim run`` process's **fixed cost** is its wall time from process start to exit minus
its simulation loop, the loop being the time from the end of its first window to the end of
its last (what grows with the simulated time). The parts, in wall seconds:

- ``python_s``: process start to the first line of raysim code (the interpreter, ``site``);
- ``imports_s``: importing ``raysim.cli`` and what its ``run`` command imports first;
- ``config_s``: reading and validating the experiment file (``config.load``), the
  protocol's family included;
- ``first_window_s``: from the runner's start to the end of the first window (the results
  directory, the shard, its topology and protocol state, ``on_start``, the first window);
- ``teardown_s``: from the end of the last window until the runner returns (closing the
  event log, the safety checks, publishing the events, writing ``runs.parquet``);
- ``exit_s``: from there to the process's exit (the interpreter's shutdown).

``fixed_s`` is their sum, ``wall_s - loop_s``; ``cpu_s`` and ``fixed_cpu_s`` are the same in
CPU seconds of the process, and ``<part>_cpu_s`` the CPU seconds of the parts timed inside
it (on a shared machine CPU time is what compares). ``loaded``
lists the heavy packages the run imported (``ray``, ``pandas``, ``plotly``, ``tqdm``): the
run measured is local and needs none of ``ray`` and ``plotly``.

The run is a push-pull gossip of :data:`NODES` nodes, full event log (``bench``'s gossip
workload, small), made ``REPEATS`` times in fresh processes; the line is the run with the
median ``fixed_s``. Each process runs :func:`child`, which imports nothing of raysim before
it starts timing.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NODES = 1_000
REPEATS = 3
HEAVY = ("ray", "pandas", "plotly", "tqdm")

_EXPERIMENT = """\
[experiment]
name = "bench_startup"
protocol = "gossip.push_pull"
seed = 7
duration = 200000
stop_when = "informed"

[protocol]
period = 1000
phase = "random"

[network]
nodes = {nodes}
delay = {{ dist = "uniform", low = 50, high = 200 }}

[log]
level = "all"
"""


def child(experiment: str, out: str) -> dict[str, Any]:
    """Run ``experiment`` locally the way ``raysim run`` does, timing each phase.

    Returns the phases' ``time.time()`` stamps (``wall``) and ``time.process_time()``
    stamps (``cpu``): start, imported, validated, first window, last window, returned.
    """
    wall, cpu = [time.time()], [time.process_time()]

    def stamp() -> None:
        wall.append(time.time())
        cpu.append(time.process_time())

    # NOTE: the command module, as the ``raysim`` script imports it first; by name, since
    # this runs as a process of its own (bench sits below cli in the layers and must not
    # depend on it).
    importlib.import_module("raysim.cli")
    from raysim.experiments import config, runner

    stamp()
    cfg = config.load(Path(experiment), [], None, imports=[])
    stamp()
    windows: list[tuple[float, float]] = []

    def progress(_end: int, _events: int) -> None:
        windows.append((time.time(), time.process_time()))

    result = runner.run(cfg, Path(out), "local", progress=progress)
    if result.status != "ok" or not windows:
        raise RuntimeError(f"startup run failed: {result.error}")
    for w, c in (windows[0], windows[-1]):
        wall.append(w)
        cpu.append(c)
    stamp()
    return {
        "wall": wall,
        "cpu": cpu,
        "windows": len(windows),
        "loaded": [m for m in HEAVY if m in sys.modules],
    }


def _one(nodes: int) -> dict[str, Any]:
    """One run in a fresh interpreter, timed from outside (start and exit) and inside."""
    with tempfile.TemporaryDirectory(prefix="raysim-bench-startup-") as tmp:
        exp = Path(tmp) / "startup.toml"
        exp.write_text(_EXPERIMENT.format(nodes=nodes), encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        launched = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "raysim.bench_startup", str(exp), str(Path(tmp) / "out")],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        ended = time.time()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"startup workload failed (exit {proc.returncode})")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    w, c = got["wall"], got["cpu"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parts = {
        "python_s": w[0] - launched,
        "imports_s": w[1] - w[0],
        "config_s": w[2] - w[1],
        "first_window_s": w[3] - w[2],
        "loop_s": w[4] - w[3],
        "teardown_s": w[5] - w[4],
        "exit_s": ended - w[5],
    }
    wall = ended - launched
    inside = ("imports", "config", "first_window", "loop", "teardown")
    cpu_parts = {f"{k}_cpu_s": c[i + 1] - c[i] for i, k in enumerate(inside)}
    return {
        **{k: round(v, 4) for k, v in parts.items()},
        **{k: round(v, 4) for k, v in cpu_parts.items()},
        "wall_s": round(wall, 4),
        "fixed_s": round(wall - parts["loop_s"], 4),
        "cpu_s": round(cpu, 4),
        "fixed_cpu_s": round(cpu - (c[4] - c[3]), 4),
        "windows": got["windows"],
        "loaded": got["loaded"],
        "peak_rss_mib": round(after.ru_maxrss / 1024.0, 1),  # the largest child's so far
    }


def bench_startup(nodes: int = NODES, repeats: int = REPEATS) -> dict[str, Any]:
    """The ``startup`` line: the median (by ``fixed_s``) of ``repeats`` fresh-process runs."""
    runs = sorted((_one(nodes) for _ in range(repeats)), key=lambda r: r["fixed_s"])
    mid = runs[len(runs) // 2]
    return {
        "workload": "startup",
        "backend": "local",
        "nodes": nodes,
        "repeats": repeats,
        **mid,
        "fixed_s_min": runs[0]["fixed_s"],
        "fixed_s_median": round(statistics.median(r["fixed_s"] for r in runs), 4),
        "cores": os.cpu_count() or 1,
    }


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2])), flush=True)
