"""The Ray-vs-local cost model of ``raysim bench --scaling`` (pure arithmetic, no Ray)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from raysim import bench, bench_model
from raysim.bench_model import Costs, Workload, break_even_events_per_window, speedup
from raysim.cli import app

COSTS = Costs(
    event_s=1e-6, cores_used=1.2, window_local_s=1e-3, window_ray_s=(1e-3, 5e-4),
    start_ray_s=(0.5, 0.1), message_s=2e-7,
)
BIG = Workload(events=20_000_000, windows=40, messages=13_000_000)


def _line(workload: str, backend: str, shards: int, windows: int, wall: float,
          **extra: float) -> dict[str, object]:
    return {"workload": workload, "backend": backend, "shards": shards, "windows": windows,
            "wall_s": wall, **extra}


def synthetic_lines(c: Costs) -> list[dict[str, object]]:
    """What the bench would print on a machine whose costs are exactly ``c``."""
    a, b = c.window_ray_s
    s0, s1 = c.start_ray_s
    out: list[dict[str, object]] = []
    for w in (750, 2250):
        out.append(_line("window_cost", "local", 1, w, 0.2 + w * c.window_local_s))
        for s in (1, 2, 4):
            out.append(_line("window_cost", "ray", s, w, s0 + s1 * s + w * (a + b * s)))
    events, wall = 7_000_000, 7_000_000 * c.event_s
    out.append(_line("scaling", "local", 1, 20, wall, cpu_s=wall * c.cores_used,
                     delivered=4_000_000, timers=3_000_000, nodes=1_000_000))
    assert events == 4_000_000 + 3_000_000
    out.append(_line("scaling", "ray", 2, 20, wall / 1.5, speedup=1.5, cores=2))
    out.append({"workload": "transfer", "per_message_s": c.message_s})
    return out


def test_fit_recovers_the_costs_it_was_measured_with() -> None:
    got = bench_model.fit(synthetic_lines(COSTS))  # type: ignore[arg-type]
    assert got.event_s == pytest.approx(COSTS.event_s)
    assert got.cores_used == pytest.approx(COSTS.cores_used)
    assert got.window_local_s == pytest.approx(COSTS.window_local_s)
    assert got.window_ray_s == pytest.approx(COSTS.window_ray_s)
    assert got.start_ray_s == pytest.approx(COSTS.start_ray_s)
    assert got.message_s == COSTS.message_s


def test_speedup_grows_with_cores_on_a_big_run_and_per_window_costs_sink_small_runs() -> None:
    ups = [speedup(COSTS, BIG, p, p) for p in (1, 2, 4, 8, 16)]
    assert ups == sorted(ups) and ups[0] < 1 < ups[-1]
    # 16 shards on 16 cores: never better than 16/u; with start-up, windows and
    # cross-shard messages free, exactly 16/u.
    assert ups[-1] < 16 / COSTS.cores_used
    free = Costs(COSTS.event_s, COSTS.cores_used, 0.0, (0.0, 0.0), (0.0, 0.0), 0.0)
    assert speedup(free, BIG, 16, 16) == pytest.approx(16 / COSTS.cores_used)
    tiny = Workload(events=20_000, windows=20_000, messages=10_000)  # 1 event per window
    assert speedup(COSTS, tiny, 16, 16) < 0.2
    # More shards than cores only adds per-window cost.
    assert speedup(COSTS, BIG, 16, 4) < speedup(COSTS, BIG, 4, 4)


def test_break_even_sits_where_the_two_predictions_cross() -> None:
    assert math.isinf(break_even_events_per_window(COSTS, 1))
    for s in (2, 8):
        x = break_even_events_per_window(COSTS, s, windows=1000)
        at = Workload(events=round(x * 1000), windows=1000, messages=round(x * 1000))
        assert speedup(COSTS, at, s, s) == pytest.approx(1.0, rel=1e-3)


def test_report_checks_the_model_against_each_measured_ray_line() -> None:
    rep = bench_model.report(synthetic_lines(COSTS), cores=(4, 16))  # type: ignore[arg-type]
    assert rep["workload"] == "scaling_model"
    assert [c["shards"] for c in rep["checked"]] == [2]
    assert [p["cores"] for p in rep["predicted"]] == [4, 16]
    assert rep["break_even_events_per_window"]["2"] > 0
    with pytest.raises(ValueError, match="needs the scaling"):
        bench_model.fit([ln for ln in synthetic_lines(COSTS) if ln["workload"] != "transfer"])


def test_scaling_flag_runs_the_scaling_workload_and_the_model(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[list[str] | None] = []

    def fake(only: list[str] | None = None, quick: bool = False):  # type: ignore[no-untyped-def]
        seen.append(only)
        yield {"workload": "x"}

    monkeypatch.setattr(bench, "run_all", fake)
    r = CliRunner().invoke(app, ["bench", "--scaling", "--quick"])
    assert r.exit_code == 0, r.output
    assert seen == [["scaling", "scaling_model"]]
    kinds = [j["workload"] for j in bench.jobs(["scaling", "scaling_model"], quick=True)]
    assert kinds.count("transfer") == 1 and "window_cost" in kinds and kinds[0] == "scaling"


def test_the_ray_lines_are_modelled_with_their_own_windows() -> None:
    """Ray runs more windows than local (it submits them before it knows they are empty):
    each Ray line is checked with its own count, and more windows predict less speed-up."""
    lines = synthetic_lines(COSTS)
    lines.append(_line("scaling", "ray", 1, 600, 9.0, speedup=0.8, cores=2))
    rep = bench_model.report(lines, cores=(4,))  # type: ignore[arg-type]
    assert rep["scaling_workload"]["ray_windows"] == 600
    by = {c["shards"]: c["model_speedup"] for c in rep["checked"]}
    work = Workload(7_000_000, 20, 4_000_000)
    assert by[2] == pytest.approx(speedup(COSTS, work, 2, 2), abs=1e-3)
    assert by[1] == pytest.approx(speedup(COSTS, replace(work, ray_windows=600), 1, 2), abs=1e-3)
    assert by[1] < speedup(COSTS, work, 1, 2)
