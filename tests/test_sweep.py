"""Sweeps: the pure expansion, seed derivation, planning errors, and running on Ray
(rows as runs finish, resume, failures, a file:// URI, kill -9 and Ctrl-C mid-sweep)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim.cli import app
from raysim.errors import ConfigError
from raysim.experiments import sweep
from raysim.experiments.config import load
from raysim.experiments.sweep import Point, derive_seed, expand, parse_sweep, plan_data
from raysim.experiments.sweep_exec import run_sweep
from tests.sweep_support import GOSSIP, data, events, rows, write_toml

ROOT = Path(__file__).resolve().parents[1]
RAYSIM = str(Path(sys.executable).with_name("raysim"))

# ------------------------------------------------------------------------ pure expansion


def test_grid_is_a_product_in_written_order_with_replicates_innermost() -> None:
    spec = parse_sweep(
        {"seeds": 2, "protocol.mode": ["push", "pull"], "network.nodes": [10, 20, 30]}
    )
    points = expand(spec)
    assert len(points) == 2 * 3 * 2
    assert points[:3] == [
        Point((("protocol.mode", "push"), ("network.nodes", 10)), 0),
        Point((("protocol.mode", "push"), ("network.nodes", 10)), 1),
        Point((("protocol.mode", "push"), ("network.nodes", 20)), 0),
    ]
    assert points[-1] == Point((("protocol.mode", "pull"), ("network.nodes", 30)), 1)


def test_zip_groups_vary_together_and_combine_with_the_grid() -> None:
    spec = parse_sweep(
        {
            "faults.loss": [0.0, 0.1],
            "zip": [{"network.nodes": [10, 20, 30], "network.degree": [4, 5, 6]}],
        }
    )
    points = expand(spec)
    assert len(points) == 2 * 3
    combos = {tuple(p.params) for p in points}
    assert (("faults.loss", 0.1), ("network.nodes", 20), ("network.degree", 5)) in combos
    assert all(
        (dict(c)["network.nodes"], dict(c)["network.degree"]) in {(10, 4), (20, 5), (30, 6)}
        for c in combos
    )


def test_nested_tables_mean_the_same_as_dotted_keys() -> None:
    nested = parse_sweep({"network": {"nodes": [1, 2]}, "faults": {"loss": [0.0]}})
    dotted = parse_sweep({"network.nodes": [1, 2], "faults.loss": [0.0]})
    assert expand(nested) == expand(dotted)


def test_seeds_count_equals_the_list_of_replicate_indices() -> None:
    assert parse_sweep({"seeds": 3}).replicates == (0, 1, 2)
    assert parse_sweep({"seeds": [7, 3]}).replicates == (7, 3)
    assert parse_sweep({}).replicates == (0,)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"network.nodes": []}, "'network.nodes' is empty"),
        ({"netwrk.nodes": [1]}, "expected a field path section.key"),
        ({"nodes": [1]}, "expected a field path section.key"),
        ({"sweep.nodes": [1]}, "expected a field path section.key"),
        ({"experiment.seed": [1, 2]}, "use sweep.seeds"),
        ({"network.nodes": 100}, "expected a list of values"),
        ({"network.nodes": [1, 1]}, "appears twice"),
        ({"seeds": 0}, "at least 1"),
        ({"seeds": []}, "expected a count"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"seeds": [-1]}, "non-negative"),
        ({"seeds": True}, "expected a count"),
        ({"zip": [{"network.nodes": [1, 2], "network.degree": [1]}]}, "equal lengths"),
        ({"network.nodes": [1], "zip": [{"network.nodes": [2]}]}, "more than one place"),
    ],
)
def test_bad_sweep_tables_are_one_line_config_errors(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_sweep(table, "exp.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("exp.toml")


def test_derive_seed_is_a_fixed_function_not_pythons_hash() -> None:
    # A golden value: the same on every machine, process and Python version.
    assert derive_seed(1, {"a": 1}, 0) == 4096257053762132782
    assert derive_seed(1, {"a": 1}, 1) != derive_seed(1, {"a": 1}, 0)
    assert derive_seed(2, {"a": 1}, 0) != derive_seed(1, {"a": 1}, 0)
    code = "from raysim.experiments.sweep import derive_seed; print(derive_seed(1, {'a': 1}, 0))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert int(out.stdout) == 4096257053762132782


# ------------------------------------------------------------------------ planning


def _ids(plan: sweep.SweepPlan) -> dict[tuple, tuple[str, int]]:
    return {
        (r.point.params, r.point.replicate): (r.run_id, r.cfg.experiment.seed) for r in plan.runs
    }


def test_an_axis_may_take_lists_of_tables() -> None:
    crashes = [[], [{"fraction": 0.1, "at": 1000}], [{"fraction": 0.3, "at": 1000}]]
    plan = plan_data(data(GOSSIP, seeds=2, **{"faults.crashes": crashes}))
    fractions = [
        r.cfg.faults.crashes[0].fraction if r.cfg.faults.crashes else 0.0 for r in plan.runs
    ]
    assert fractions == [0.0, 0.0, 0.1, 0.1, 0.3, 0.3]
    assert len({r.run_id for r in plan.runs}) == 6


def test_adding_an_axis_value_or_a_replicate_keeps_existing_runs() -> None:
    small = plan_data(data(GOSSIP, seeds=2, **{"network.nodes": [40, 120]}))
    big = plan_data(data(GOSSIP, seeds=3, **{"network.nodes": [40, 120, 200]}))
    a, b = _ids(small), _ids(big)
    assert len(a) == 4 and len(b) == 9
    assert all(b[k] == v for k, v in a.items())
    assert len({seed for _, seed in b.values()}) == 9


def test_a_new_axis_that_includes_the_current_value_keeps_existing_runs() -> None:
    before = plan_data(data(GOSSIP, seeds=2, **{"network.nodes": [40]}))
    after = plan_data(data(GOSSIP, seeds=2, **{"network.nodes": [40], "faults.loss": [0.0, 0.1]}))
    old = {r.run_id for r in before.runs}
    new = {r.run_id for r in after.runs if dict(r.point.params)["faults.loss"] == 0.0}
    assert old == new


def test_overrides_change_the_sweep_or_narrow_an_axis() -> None:
    p = plan_data(GOSSIP, ["sweep.seeds=1", "network.nodes=40", "faults.loss=0.2"])
    assert len(p.runs) == 3  # only the mode axis still has several values
    assert {r.cfg.network.nodes for r in p.runs} == {40}
    assert {r.cfg.faults.loss for r in p.runs} == {0.2}
    p = plan_data(GOSSIP, ["sweep.network.nodes=[50]", "sweep.seeds=[4]"])
    assert {r.cfg.network.nodes for r in p.runs} == {50}
    assert {r.point.replicate for r in p.runs} == {4}
    zipped = data(GOSSIP, zip=[{"network.nodes": [40, 50], "network.degree": [4, 5]}])
    with pytest.raises(ConfigError, match="zipped sweep axis"):
        plan_data(zipped, ["network.nodes=40"])


def test_bad_points_name_the_point_and_field() -> None:
    with pytest.raises(ConfigError, match=r"sweep point .*network.nodez=1.*network.nodez: unknown"):
        plan_data(data(GOSSIP, **{"network.nodez": [1]}), where="x.toml")
    with pytest.raises(ConfigError, match=r"protocol.mode"):
        plan_data(data(GOSSIP, **{"protocol.mode": ["push", "shout"]}), where="x.toml")
    with pytest.raises(ConfigError, match="resolve to the same run"):
        plan_data(data(GOSSIP, **{"faults.loss": [0, 0.0]}), where="x.toml")


def test_the_example_experiments_plan_and_still_run_as_one_point() -> None:
    full = sweep.plan(ROOT / "experiments" / "gossip_convergence.toml")
    assert len(full.runs) == 3 * 3 * 3 * 10
    assert len(sweep.plan(ROOT / "experiments" / "gossip_quick.toml").runs) == 3 * 2 * 3 * 5
    one = load(ROOT / "experiments" / "gossip_convergence.toml")  # what `raysim run` does
    assert one.network.nodes == 1000 and one.protocol["mode"] == "push_pull"
    assert one.log.level == "all" and {r.cfg.log.level for r in full.runs} == {"observations"}
    assert {r.cfg.protocol["mode"] for r in full.runs} == {"push", "pull", "push_pull"}
    no_sweep = plan_data({k: v for k, v in GOSSIP.items() if k != "sweep"})
    assert len(no_sweep.runs) == 1 and no_sweep.runs[0].point.replicate == 0


# ------------------------------------------------------------------------ running


def test_sweep_writes_rows_and_resumes_only_what_is_missing(
    ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_data(data(GOSSIP, seeds=2, **{"protocol.mode": ["push", "pull"]}), where="t")
    first = run_sweep(plan, tmp_path, progress=False, max_parallel=2)
    assert (first.ok, first.skipped, first.failed, first.exit_code) == (4, 0, [], 0)
    res = tmp_path / "tiny"
    table = pd.read_parquet(res / "runs.parquet")
    assert sorted(table["run_id"]) == sorted(r.run_id for r in plan.runs)
    assert set(table["status"]) == {"ok"} and table["ray_node_id"].str.len().min() > 0
    assert sorted(table["replicate"]) == [0, 0, 1, 1]
    manifest = (res / "sweep.json").read_text()
    assert '"protocol.mode"' in manifest and plan.runs[0].run_id in manifest
    again = run_sweep(plan, tmp_path, progress=False)
    assert (again.ok, again.skipped) == (0, 4)
    # Events gone → that run is redone; row gone (driver died after publishing) → redone.
    gone_events, gone_row = plan.runs[0].run_id, plan.runs[1].run_id
    before = events(res, gone_row)
    shutil.rmtree(res / "events" / f"run_id={gone_events}")
    table[table["run_id"] != gone_row].to_parquet(res / "runs.parquet", index=False)
    # Leftovers of killed writers: a torn runs-table temporary, and staging folders of
    # attempts whose process died (one for a run to redo, one for a run Ray retried fine).
    (res / ".runs-0123456789abcdef.parquet").write_bytes(b"PAR1 torn")
    for rid in (gone_events, plan.runs[3].run_id):
        dead = res / "events" / f".staging-{rid}-0badcafe"
        dead.mkdir()
        (dead / "part-00000.parquet").write_bytes(b"half")
    capsys.readouterr()
    third = run_sweep(plan, tmp_path, progress=True)
    assert (third.ok, third.skipped) == (2, 2)
    bar = capsys.readouterr().err
    assert "4/4" in bar and "ok=2" in bar and "run/s" in bar  # counts and rate (for the ETA)
    assert len(pd.read_parquet(res / "runs.parquet")) == 4
    assert not list(res.glob(".runs-*")) and not list((res / "events").glob(".staging-*"))
    pd.testing.assert_frame_equal(events(res, gone_row), before)


def test_a_failing_run_is_recorded_and_the_others_continue(
    ray_session: None, tmp_path: Path
) -> None:
    import tests.sweep_plugin  # noqa: F401  (registers test.flaky in this process)

    raw = {
        "experiment": {"name": "flaky", "protocol": "test.flaky", "seed": 1, "duration": 5000,
                       "modules": ["tests.sweep_plugin"]},
        "network": {"nodes": 8},
        "sweep": {"seeds": 2, "protocol.fail": [False, True]},
    }
    plan = plan_data(raw, where="flaky")
    summary = run_sweep(plan, tmp_path, progress=False)
    assert (summary.ok, len(summary.failed), summary.exit_code) == (2, 2, 1)
    assert "protocol handler failed at node 1" in summary.describe()
    table = pd.read_parquet(tmp_path / "flaky" / "runs.parquet")
    failed = table[table["status"] == "failed"]
    assert len(failed) == 2 and set(failed["protocol.fail"]) == {True}
    assert failed["error"].str.contains("node 1").all()
    assert failed["traceback"].str.contains("failed on purpose").all()
    assert not any((tmp_path / "flaky" / "events").glob(f"run_id={failed['run_id'].iloc[0]}"))
    retry = run_sweep(plan, tmp_path, progress=False)
    assert (retry.skipped, retry.ok, len(retry.failed)) == (2, 0, 2)


def test_a_file_uri_gives_the_same_results_as_a_path(ray_session: None, tmp_path: Path) -> None:
    from raysim import analysis as ra

    plan = plan_data(data(GOSSIP, seeds=1, **{"protocol.mode": ["push", "pull"]}))
    run_sweep(plan, tmp_path / "plain", progress=False)
    uri = f"file://{tmp_path}/remote"
    summary = run_sweep(plan, uri, progress=False)
    assert summary.ok == 2 and summary.results == f"{uri}/tiny"
    plain, remote = tmp_path / "plain" / "tiny", tmp_path / "remote" / "tiny"
    pd.testing.assert_frame_equal(rows(plain), rows(remote))
    for r in plan.runs:
        pd.testing.assert_frame_equal(events(plain, r.run_id), events(remote, r.run_id))
    assert run_sweep(plan, uri, progress=False).skipped == 2
    assert len(ra.load_runs(f"{uri}/tiny")) == 2
    assert len(ra.observations(f"{uri}/tiny", "informed")) == 2 * 40


def test_a_second_sweep_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    import fcntl

    plan = plan_data(data(GOSSIP, seeds=1, **{"protocol.mode": ["push"]}))
    (tmp_path / "tiny").mkdir()
    with open(tmp_path / "tiny" / ".sweep.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another raysim sweep"):
            run_sweep(plan, tmp_path, progress=False)


# ------------------------------------------------------------------------ CLI errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "sweep.network.nodes=[]"], "is empty"),
        (["--set", "sweep.network.nodez=[5]"], "network.nodez: unknown field"),
        (["--set", "sweep.nodes=[5]"], "expected a field path"),
        (["--max-parallel", "0"], "must be at least 1"),
    ],
)
def test_cli_sweep_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    exp = write_toml(tmp_path / "e.toml", data(GOSSIP, seeds=1, **{"protocol.mode": ["push"]}))
    cmd = ["sweep", str(exp), "--out", str(tmp_path), "--no-progress", *args]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_report_of_an_unknown_directory_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such results directory" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no runs.parquet" in result.output


# ------------------------------------------------------------------------ interruption


SLOW = data(GOSSIP, seeds=4, **{"protocol.mode": ["push", "pull"], "network.nodes": [2500]})


def _start(exp: Path, out: Path, own_ray: bool = False) -> subprocess.Popen[str]:
    """A ``raysim sweep`` in the background: joining this session's Ray, or (``own_ray``)
    starting its own, as a user's sweep does; a driver that starts Ray stops it on exit."""
    import ray

    join = [] if own_ray else ["--address", ray.get_runtime_context().gcs_address]
    return subprocess.Popen(
        [
            RAYSIM,
            "sweep",
            str(exp),
            "--out",
            str(out),
            *join,
            "--no-progress",
            "--max-parallel",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_rows(proc: subprocess.Popen[str], runs: Path, at_least: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before it could be interrupted: {proc.communicate()}")
        if runs.exists():
            try:
                n = len(pd.read_parquet(runs, columns=["run_id"]))
            except Exception:
                n = 0
            if n >= at_least:
                return n
        time.sleep(0.02)
    pytest.fail("no rows appeared")


def _wait_until_no_live_staging(events: Path) -> None:
    """Poll until no staging folder under ``events`` has a live owner (twice in a row)."""
    from raysim.runtime.staging import STAGING, owner_gone

    deadline = time.monotonic() + 120
    quiet = 0
    while quiet < 2:
        live = [p for p in events.glob(".staging-*") if STAGING.match(p.name) and not owner_gone(p)]
        quiet = 0 if live else quiet + 1
        if time.monotonic() > deadline:
            pytest.fail(f"staging folders still owned by live tasks: {live}")
        time.sleep(0.1)


def _check_complete(results: Path) -> pd.DataFrame:
    """Every visible events directory is a complete, readable run; rows are unique."""
    table = pd.read_parquet(results / "runs.parquet")
    assert table["run_id"].is_unique and set(table["status"]) == {"ok"}
    for d in (results / "events").glob("run_id=*"):
        assert len(pd.read_parquet(d)) > 0
    return table


def test_kill_9_mid_sweep_then_rerun_equals_an_uninterrupted_sweep(
    ray_session: None, tmp_path: Path
) -> None:
    plan = plan_data(SLOW, where="slow")
    reference = run_sweep(plan, tmp_path / "ref", progress=False)
    assert reference.ok == 8
    exp = write_toml(tmp_path / "slow.toml", SLOW)
    out = tmp_path / "killed"
    proc = _start(exp, out)
    _wait_for_rows(proc, out / "tiny" / "runs.parquet", 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the killed driver left in its group
    # NOTE: Ray kills a dead driver's tasks asynchronously; wait until none of them holds a
    # staging folder any more, so no straggler renames a run into place while we look.
    _wait_until_no_live_staging(out / "tiny" / "events")
    done = _check_complete(out / "tiny")
    assert 2 <= len(done) < 8, "the sweep should have been killed half-way"
    resumed = run_sweep(plan, out, progress=False)
    assert resumed.skipped == len(done) and resumed.ok == 8 - len(done)
    pd.testing.assert_frame_equal(rows(out / "tiny"), rows(tmp_path / "ref" / "tiny"))
    for r in plan.runs:
        pd.testing.assert_frame_equal(
            events(out / "tiny", r.run_id), events(tmp_path / "ref" / "tiny", r.run_id)
        )
    assert not list((out / "tiny" / "events").glob(".staging-*"))


def test_ctrl_c_stops_cleanly_and_exits_130(ray_session: None, tmp_path: Path) -> None:
    exp = write_toml(tmp_path / "slow.toml", SLOW)
    out = tmp_path / "out"
    # NOTE: its own Ray, as a user's Ctrl-C'd sweep has. Joined to the session's long-lived
    # cluster late in the suite, Ray 2.60's core worker sometimes aborts while cancelling
    # ("Tried to complete task that was not pending"), a Ray-side race.
    proc = _start(exp, out, own_ray=True)
    _wait_for_rows(proc, out / "tiny" / "runs.parquet", 1)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    done = _check_complete(out / "tiny")
    assert len(done) < 8
    assert not list((out / "tiny" / "events").glob(".staging-*"))
    finished = run_sweep(plan_data(SLOW, where="slow"), out, progress=False)
    assert finished.skipped + finished.ok == 8 and not finished.failed
