"""`raysim bench` reports what it measured (no timing is asserted: figures live in the README)."""

from __future__ import annotations

import json

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
        bench._in_subprocess({"workload": "gossip_push_pull", "kind": "gossip", "args": [n],
                              "run": {"backend": "local"}})
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
