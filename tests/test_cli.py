"""The command line: a run leaves a complete results directory; bad input exits 2 in one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim.api.protocol import Protocol, register
from raysim.cli import app

EXAMPLE = str(Path(__file__).parent.parent / "experiments" / "gossip_convergence.toml")
runner = CliRunner()


@register("test.explodes")
class Explodes(Protocol):
    """Raises in its timer handler at node 2."""

    def on_start(self, ctx: object) -> None:
        ctx.set_timer(5, "boom")  # type: ignore[attr-defined]

    def on_timer(self, ctx: object, tag: object) -> None:
        if self.node == 2:
            raise RuntimeError("kaboom")


def test_run_writes_runs_table_and_event_log(tmp_path: Path) -> None:
    out = tmp_path / "results"
    r = runner.invoke(app, ["run", EXAMPLE, "--out", str(out), "--set", "network.nodes=200"])
    assert r.exit_code == 0, r.output
    assert "rounds to full" in r.stdout
    runs = pd.read_parquet(out / "gossip_convergence" / "runs.parquet")
    assert list(runs["status"]) == ["ok"]
    assert runs.loc[0, "network.nodes"] == 200
    assert runs.loc[0, "informed_nodes"] == 200
    parts = list((out / "gossip_convergence" / "events").glob("run_id=*/part-*.parquet"))
    assert parts
    events = pd.read_parquet(parts[0])
    assert {"send", "deliver", "timer", "obs", "start"} <= set(events["kind"].astype(str))
    assert len(events) == runs.loc[0, "events_logged"]


def test_rerunning_replaces_the_run_instead_of_duplicating_it(tmp_path: Path) -> None:
    args = ["run", EXAMPLE, "--out", str(tmp_path), "--set", "network.nodes=50"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--seed", "9"]).exit_code == 0
    runs = pd.read_parquet(tmp_path / "gossip_convergence" / "runs.parquet")
    assert len(runs) == 2
    assert len(list((tmp_path / "gossip_convergence" / "events").iterdir())) == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "network.nodes=x"], "network.nodes"),
        (["--set", "protocol.fanot=2"], "protocol.fanot: unknown field"),
        (["--set", "experiment.protocol=nope"], "unknown protocol"),
        (["--backend", "cloud"], "--backend 'cloud'"),
        (["--router", "middle"], "--router 'middle'"),
        (["--shards", "0"], "--shards 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "results"
    r = runner.invoke(app, ["run", EXAMPLE, "--out", str(out), *args])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in r.output
    assert not (out / "gossip_convergence" / "runs.parquet").exists()


def test_missing_experiment_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2
    assert "no such experiment file" in r.stderr


def test_unwritable_results_directory() -> None:
    # /proc refuses new directories even to root, so this holds for every user.
    r = runner.invoke(app, ["run", EXAMPLE, "--out", "/proc/raysim-results"])
    assert r.exit_code == 2
    assert "not writable" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_results_path_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("precious")
    r = runner.invoke(app, ["run", EXAMPLE, "--out", str(f)])
    assert r.exit_code == 2
    assert "not a directory" in r.stderr
    assert f.read_text() == "precious"


def test_a_corrupt_runs_table_is_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "gossip_convergence"
    d.mkdir()
    (d / "runs.parquet").write_text("not parquet")
    r = runner.invoke(app, ["run", EXAMPLE, "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "runs.parquet" in r.stderr
    assert (d / "runs.parquet").read_text() == "not parquet"


def test_a_failing_protocol_reports_node_time_event_and_traceback(tmp_path: Path) -> None:
    exp = tmp_path / "explodes.toml"
    exp.write_text(
        '[experiment]\nname = "boom"\nprotocol = "test.explodes"\n[network]\nnodes = 5\n'
    )
    r = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path)])
    assert r.exit_code == 1
    assert "node 2, time 5" in r.stderr and "timer 'boom'" in r.stderr
    assert "RuntimeError: kaboom" in r.stderr
    runs = pd.read_parquet(tmp_path / "boom" / "runs.parquet")
    assert list(runs["status"]) == ["failed"]
    assert "kaboom" in runs.loc[0, "traceback"]
    events = tmp_path / "boom" / "events"
    assert [p.name for p in events.iterdir()] == []  # nothing half-written


def test_protocols_lists_names_and_parameters() -> None:
    r = runner.invoke(app, ["protocols"])
    assert r.exit_code == 0
    for name in ("gossip.push", "gossip.pull", "gossip.push_pull", "gossip.average"):
        assert name in r.stdout
    assert "fanout" in r.stdout and "'push', 'pull', 'push_pull'" in r.stdout
