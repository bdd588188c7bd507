"""Protocols from anywhere: a protocol in a file of its own, by registered name or as
``module:Class``, on the local backend, on Ray with any shard count, and in sweeps; every
way of naming it wrongly is one line and exit code 2 before anything is written."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim.cli import app
from raysim.errors import ConfigError
from raysim.experiments import config, runner, sweep
from raysim.experiments.sweep_exec import run_sweep
from raysim.protocols import module_sources, resolve

from .conftest import canonical

PROTOCOL = '''
"""A ping-pong protocol for tests: node 0 pings a random peer every period."""
from typing import Any, ClassVar, NamedTuple
from pydantic import Field
from raysim.api.protocol import Context, Params, Protocol, register


class Ping(NamedTuple):
    n: int


class PingParams(Params):
    period: int = Field(50, ge=1)


@register("{name}")
class PingPong(Protocol):
    """Ping a random peer every period; every node answers a ping once."""

    Params: ClassVar[type[PingParams]] = PingParams
    milestones: ClassVar[tuple[str, ...]] = ("pinged",)

    def on_start(self, ctx: Context) -> None:
        ctx.set_timer(1 + ctx.rng.randrange(self.params.period), "tick")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.send(ctx.random_peer(), Ping(ctx.now))
        ctx.set_timer(self.params.period, "tick")

    def on_message(self, ctx: Context, src: int, msg: Ping) -> None:
        ctx.emit("pinged", float(msg.n), peer=src)


NOT_A_PROTOCOL = 42
'''


def write_protocol(folder: Path) -> tuple[str, str]:
    """A fresh protocol module in ``folder``; returns (module name, registered name)."""
    module = f"pingpong_{uuid.uuid4().hex[:10]}"
    name = f"test.{module}"
    (folder / f"{module}.py").write_text(PROTOCOL.replace("{name}", name))
    return module, name


def write_experiment(folder: Path, protocol: str, modules: list[str], nodes: int = 12) -> Path:
    exp = folder / "exp.toml"
    exp.write_text(textwrap.dedent(f"""
        [experiment]
        name = "mine"
        protocol = "{protocol}"
        modules = {json.dumps(modules)}
        seed = 5
        duration = 600

        [network]
        nodes = {nodes}
        delay = {{ dist = "uniform", low = 5, high = 30 }}
    """))
    return exp


def test_a_protocol_beside_the_experiment_runs_by_name_and_records_what_it_resolved_to(
    tmp_path: Path,
) -> None:
    module, name = write_protocol(tmp_path)
    exp = write_experiment(tmp_path, name, [module])
    result = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    row = pd.read_parquet(tmp_path / "out/mine/runs.parquet").iloc[0]
    assert row["protocol"] == name and row["status"] == "ok"
    assert row["experiment.protocol_class"] == f"{module}:PingPong"
    assert json.loads(row["experiment.modules"]) == [module]
    assert row["pinged_nodes"] > 0
    assert json.loads(row["config"])["experiment"]["modules"] == [module]


def test_modules_and_the_resolved_class_are_part_of_the_run_id(tmp_path: Path) -> None:
    module, name = write_protocol(tmp_path)
    by_name = config.load(write_experiment(tmp_path, name, [module]))
    by_ref = config.load(write_experiment(tmp_path, f"{module}:PingPong", []))
    assert by_name.experiment.protocol_class == by_ref.experiment.protocol_class
    assert by_name.run_id() != by_ref.run_id()  # the configs differ in protocol and modules
    again = config.validate(json.loads(json.dumps(by_name.resolved())), "rerun", tmp_path)
    assert again.run_id() == by_name.run_id()  # a run row's config reruns to the same id


def test_import_option_equals_the_modules_list(tmp_path: Path) -> None:
    module, name = write_protocol(tmp_path)
    listed = config.load(write_experiment(tmp_path, name, [module]))
    imported = config.load(write_experiment(tmp_path, name, []), imports=[module])
    assert imported.experiment.modules == (module,)
    assert imported.run_id() == listed.run_id()


@pytest.mark.parametrize(
    ("protocol", "modules", "message"),
    [
        ("test.nope", [], "unknown protocol 'test.nope'"),
        ("{name}", ["no_such_module_xyz"], "cannot import: no module named 'no_such_module_xyz'"),
        ("{name}", ["broken_mod"], "importing it raised ZeroDivisionError"),
        ("{module}:NOT_A_PROTOCOL", [], "is a int, not a protocol class"),
        ("{module}:Missing", [], "has no attribute 'Missing'"),
        ("{module}:Ping", [], "is a type, not a protocol class"),
        ("{name}", ["bad name"], "not a module name"),
    ],
)
def test_a_protocol_that_does_not_resolve_is_one_line_and_exit_code_2(
    tmp_path: Path, protocol: str, modules: list[str], message: str
) -> None:
    module, name = write_protocol(tmp_path)
    (tmp_path / "broken_mod.py").write_text("x = 1 / 0\n")
    ref = protocol.replace("{name}", name).replace("{module}", module)
    exp = write_experiment(tmp_path, ref, modules)
    out = tmp_path / "out"
    for cmd in (["run", str(exp)], ["sweep", str(exp), "--no-progress"]):
        result = CliRunner().invoke(app, [*cmd, "--out", str(out)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
        assert not out.exists()


def test_resolution_never_leaves_the_experiment_folder_on_sys_path(tmp_path: Path) -> None:
    import sys

    module, name = write_protocol(tmp_path)
    before = list(sys.path)
    assert resolve(name, [module], tmp_path).reference == f"{module}:PingPong"
    assert sys.path == before
    assert module_sources(name, [module]) == [str((tmp_path / f"{module}.py").resolve())]
    assert module_sources("gossip", ["raysim.protocols.gossip", "json"]) == []
    with pytest.raises(ConfigError, match="cannot import"):
        resolve(name, ["pingpong_not_there"], tmp_path)


@pytest.mark.parametrize("shards", [1, 3])
def test_ray_shards_import_the_users_module_and_write_the_local_log(
    ray_session: None, tmp_path: Path, shards: int
) -> None:
    module, _ = write_protocol(tmp_path)
    cfg = config.load(write_experiment(tmp_path, f"{module}:PingPong", []))
    local = runner.run(cfg, tmp_path / "local")
    ray = runner.run(cfg, tmp_path / "ray", backend="ray", shards=shards)
    assert (local.status, ray.status) == ("ok", "ok"), ray.error
    assert ray.row["shards"] == shards
    assert local.events_dir is not None and ray.events_dir is not None
    log = canonical(local.events_dir)
    assert (log["name"] == "pinged").sum() > 10
    pd.testing.assert_frame_equal(canonical(ray.events_dir), log)


def test_ray_router_actor_also_imports_the_users_messages(
    ray_session: None, tmp_path: Path
) -> None:
    module, name = write_protocol(tmp_path)
    cfg = config.load(write_experiment(tmp_path, name, [module]))
    local = runner.run(cfg, tmp_path / "local")
    ray = runner.run(cfg, tmp_path / "ray", backend="ray", shards=2, router="actor")
    assert ray.status == "ok", ray.error
    assert local.events_dir is not None and ray.events_dir is not None
    pd.testing.assert_frame_equal(canonical(ray.events_dir), canonical(local.events_dir))


def test_a_sweep_of_a_users_protocol_gives_the_local_runs(
    ray_session: None, tmp_path: Path
) -> None:
    module, name = write_protocol(tmp_path)
    exp = write_experiment(tmp_path, name, [module])
    exp.write_text(exp.read_text() + '\n[sweep]\nseeds = 2\n"protocol.period" = [40, 70]\n')
    plan = sweep.plan(exp)
    summary = run_sweep(plan, tmp_path / "sweep", progress=False)
    assert (summary.ok, summary.exit_code) == (4, 0), summary.describe()
    for r in plan.runs:
        local = runner.run(r.cfg, tmp_path / "local")
        assert local.events_dir is not None
        swept = tmp_path / "sweep" / "mine" / "events" / f"run_id={r.run_id}"
        pd.testing.assert_frame_equal(canonical(swept), canonical(local.events_dir))


def test_protocols_lists_an_imported_module_and_rejects_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, name = write_protocol(tmp_path)
    monkeypatch.chdir(tmp_path)
    listed = CliRunner().invoke(app, ["protocols", "--import", module])
    assert listed.exit_code == 0 and f"{name}  —  Ping a random peer" in listed.output
    missing = CliRunner().invoke(app, ["protocols", "--import", "pingpong_missing"])
    assert missing.exit_code == 2
    assert missing.output.strip() == ("error: --import: 'pingpong_missing': cannot import: no "
                                      f"module named 'pingpong_missing' (searched {tmp_path} "
                                      "and sys.path)")
