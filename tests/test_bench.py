"""`raysim bench` reports what it measured (no timing is asserted: figures live in the README)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from raysim import bench
from raysim.bench import averaging_config, gossip_config, measure
from raysim.cli import app


def test_measure_reports_consistent_counts() -> None:
    line = measure("gossip_push_pull", gossip_config(300), "local")
    assert line["nodes"] == 300 and line["backend"] == "local"
    assert line["delivered"] > 300 and line["timers"] > 300
    assert line["events_logged"] > line["delivered"] + line["timers"]
    assert (
        abs(line["delivered_per_s"] - line["delivered"] / line["wall_s"])
        <= 0.01 * line["delivered_per_s"] + 1
    )
    assert line["rounds"] > 1 and line["peak_rss_mib"] > 0
    assert 0 < line["checks_s"] < line["wall_s"]  # gossip has checks; they are part of the run
    assert 0 < line["checks_cpu_s"] < line["cpu_s"]
    json.dumps(line)


def test_averaging_workload_has_the_documented_shape() -> None:
    cfg = averaging_config(500, rounds=3)
    assert cfg.network.topology == "random" and cfg.network.degree == 20
    assert cfg.network.delay.lower_bound == 50  # 5 % of a 1000-tick round
    line = measure("averaging", cfg, "local")
    assert line["timers"] == 500 * 3  # one timer per node per round, exactly


def test_unknown_workload_is_exit_2() -> None:
    r = CliRunner().invoke(app, ["bench", "--only", "nope"])
    assert r.exit_code == 2
    assert "unknown workload" in r.stderr


def test_each_workload_reports_its_own_peak_memory() -> None:
    # A large run first, then a small one: a process-lifetime peak would repeat the first.
    big, small = (
        bench._in_subprocess(
            {
                "workload": "gossip_push_pull",
                "kind": "gossip",
                "args": [n],
                "run": {"backend": "local"},
            }
        )
        for n in (30_000, 200)
    )
    assert big["nodes"] == 30_000 and small["nodes"] == 200
    assert small["peak_rss_mib"] < big["peak_rss_mib"] - 20
    assert small["driver_peak_rss_mib"] == small["peak_rss_mib"]  # local: no actors


def test_bench_help_lists_every_workload() -> None:
    r = CliRunner().invoke(app, ["bench", "--help"])
    assert r.exit_code == 0
    for workload in bench.WORKLOADS:
        assert f"{workload}:" in r.stdout


def test_per_node_workloads_run_the_per_node_protocols() -> None:
    from raysim.bench import chord_config, reference_config

    ref = reference_config(300)
    assert ref.experiment.protocol == "gossip.reference"
    twin = measure("gossip_push_pull", gossip_config(300), "local")
    line = measure("gossip_reference", ref, "local")
    # the per-node twin does the same work, message for message
    assert (line["delivered"], line["timers"]) == (twin["delivered"], twin["timers"])
    chord = chord_config()
    assert chord.experiment.protocol == "chord" and chord.network.nodes == 1024


def test_cycle_workload_is_lockstep_with_observations_only() -> None:
    from raysim.bench import cycle_config

    cfg = cycle_config(400, rounds=3)
    assert cfg.protocol["phase"] == "lockstep" and cfg.log.level == "observations"
    line = measure("cycle", cfg, "local")
    assert line["timers"] == 400 * 3
    assert line["events_logged"] < line["delivered"] + line["timers"]  # no message rows


def test_scaling_runs_local_then_ray_doubling_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    js = bench.scaling_jobs(1000, rounds=1)
    assert [j["run"] for j in js] == [
        {"backend": "local"},
        {"backend": "ray", "shards": 1},
        {"backend": "ray", "shards": 2},
        {"backend": "ray", "shards": 4},
    ]
    assert {j["kind"] for j in js} == {"cycle"} and all(j["args"] == [1000, 1] for j in js)
    lines = [{"workload": "scaling", "backend": "local", "shards": 1, "wall_s": 8.0}] + [
        {"workload": "scaling", "backend": "ray", "shards": k, "wall_s": 10.0 / k}
        for k in (1, 2, 4)
    ]
    rows = list(bench.with_speedup(iter(lines)))
    assert [r["efficiency"] for r in rows] == [1.0, 0.8, 0.8, 0.8]
    assert rows[-1]["speedup"] == 3.2
    assert "speedup" not in next(bench.with_speedup(iter([{"workload": "ring"}])))


def test_averaging_on_ray_is_measured_on_both_transports(ray_session: None) -> None:
    jobs = [j["run"] for j in bench.jobs(["averaging"], quick=True)]
    assert {"backend": "ray", "shards": 2, "router": "shard"} in jobs
    assert {"backend": "ray", "shards": 2, "router": "shard", "transport": "tasks"} in jobs
    cfg = averaging_config(400, rounds=3)
    local = measure("averaging", cfg, "local")
    mesh = measure("averaging", cfg, "ray", shards=2)
    tasks = measure("averaging", cfg, "ray", shards=2, transport="tasks")
    assert (local["transport"], mesh["transport"], tasks["transport"]) == (
        "local", "mesh", "tasks"
    )
    for line in (mesh, tasks):
        assert (line["delivered"], line["timers"]) == (local["delivered"], local["timers"])
    # the mesh walks the local backend's windows; the task path runs some empty ones ahead
    assert mesh["windows"] == local["windows"] <= tasks["windows"]
