"""A sweep on a three-node Ray cluster spreads its runs over every node and gives exactly the
results of running each point locally, without Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from raysim.experiments import runner, sweep
from tests.sweep_support import GOSSIP, data, events, rows, write_toml

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_on_a_three_node_cluster_equals_local_runs(tmp_path: Path) -> None:
    raw = data(GOSSIP, seeds=2, **{"protocol.mode": ["push", "pull", "push_pull"],
                                   "network.nodes": [300]})
    exp = write_toml(tmp_path / "exp.toml", raw)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cluster_sweep", str(exp), str(tmp_path / "cluster"), "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["exit_code"] == 0, info["summary"]
    assert len(info["nodes"]) == 3
    on_cluster = tmp_path / "cluster" / "tiny"
    table = pd.read_parquet(on_cluster / "runs.parquet")
    assert len(table) == 6 and set(table["status"]) == {"ok"}
    assert set(table["ray_node_id"]) == set(info["nodes"]), "runs should use every node"

    # The same points, run one by one in this process with the local backend and no Ray.
    plan = sweep.plan(exp)
    for r in plan.runs:
        result = runner.run(r.cfg, tmp_path / "local", backend="local")
        result.row["replicate"] = r.point.replicate
    local = tmp_path / "local" / "tiny"
    local_rows = rows(local)
    pd.testing.assert_frame_equal(rows(on_cluster)[local_rows.columns], local_rows,
                                  check_dtype=False)
    for r in plan.runs:
        pd.testing.assert_frame_equal(events(on_cluster, r.run_id), events(local, r.run_id))


def test_a_users_protocol_module_reaches_every_node_of_the_cluster(tmp_path: Path) -> None:
    """The module lives only in the experiment's folder: the tasks get it through their
    runtime_env (py_modules), not from the driver's disk, and the logs equal local runs."""
    from tests.test_platform import write_experiment, write_protocol

    module, name = write_protocol(tmp_path)
    exp = write_experiment(tmp_path, name, [module], nodes=40)
    exp.write_text(exp.read_text().replace('name = "mine"', 'name = "tiny"')
                   + "\n[sweep]\nseeds = 4\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cluster_sweep", str(exp), str(tmp_path / "cluster")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["exit_code"] == 0, info["summary"]
    table = pd.read_parquet(tmp_path / "cluster" / "tiny" / "runs.parquet")
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert set(table["ray_node_id"]) == set(info["nodes"]), "runs should use both nodes"
    for r in sweep.plan(exp).runs:
        result = runner.run(r.cfg, tmp_path / "local")
        assert result.events_dir is not None
        pd.testing.assert_frame_equal(events(tmp_path / "cluster" / "tiny", r.run_id),
                                      events(tmp_path / "local" / "tiny", r.run_id))
