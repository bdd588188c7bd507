"""Bad input, as a hostile or careless user would type it: one line, exit code 2, nothing written.

Every case runs the real command line (typer's CliRunner, in this process; a few through the
installed ``raysim`` script) against a results directory that already holds a finished run,
and checks: exit code 2, exactly one line on stderr, no traceback, and the results directory
byte for byte as it was (a hash of every path and file content under it, before and after).
No case may get as far as starting Ray or writing a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raysim.cli import app

runner = CliRunner()
RAYSIM = str(Path(sys.executable).with_name("raysim"))

BASE = """\
[experiment]
name = "bad"
protocol = "gossip.push_pull"
seed = 1
duration = 3000
stop_when = "informed"

[protocol]
period = 100

[network]
nodes = 200
delay = { dist = "uniform", low = 5, high = 20 }

[log]
level = "all"
"""


@dataclass(frozen=True)
class Case:
    """One bad input: the command, its arguments (``{exp}``, ``{out}``, ``{tmp}`` filled in)."""

    id: str
    args: tuple[str, ...]
    setup: Callable[[Path], None] | None = field(default=None, compare=False)


def _sets(*items: str) -> tuple[str, ...]:
    return tuple(a for item in items for a in ("--set", item))


# --- overrides that are bad for `run` and `sweep` alike --------------------------------------

BIG = "99999999999999999999"  # 10**20: beyond int64
OVERRIDES: list[tuple[str, tuple[str, ...]]] = [
    ("name-dotdot", _sets('experiment.name=".."')),
    ("name-dot", _sets('experiment.name="."')),
    ("name-slash", _sets('experiment.name="a/b"')),
    ("name-abs", _sets('experiment.name="/etc"')),
    ("name-hidden", _sets('experiment.name=".hidden"')),
    ("name-empty", _sets('experiment.name=""')),
    ("name-long", _sets(f'experiment.name="{"x" * 101}"')),
    ("name-space", _sets('experiment.name="a b"')),
    ("name-nul", _sets('experiment.name="a\\u0000b"')),
    ("protocol-unknown", _sets("experiment.protocol=nope")),
    ("protocol-int", _sets("experiment.protocol=42")),
    ("seed-negative", _sets("experiment.seed=-1")),
    ("seed-int64", _sets(f"experiment.seed={BIG}")),
    ("duration-zero", _sets("experiment.duration=0")),
    ("duration-int64", _sets(f"experiment.duration={BIG}")),
    ("duration-hours-int64", _sets(f'experiment.duration="{BIG}h"')),
    ("duration-negative", _sets('experiment.duration="-5s"')),
    ("duration-unit", _sets('experiment.duration="10 parsecs"')),
    ("duration-float", _sets("experiment.duration=2.5")),
    ("duration-tiny-tick", _sets('experiment.duration="1000000h"', "experiment.tick_ms=1e-9")),
    ("tick-inf", _sets("experiment.tick_ms=inf")),
    ("tick-nan", _sets("experiment.tick_ms=nan")),
    ("tick-zero", _sets("experiment.tick_ms=0")),
    ("tick-negative", _sets("experiment.tick_ms=-1")),
    ("stop-when-int", _sets("experiment.stop_when=42")),
    ("experiment-unknown-field", _sets("experiment.colour=red")),
    ("nodes-one", _sets("network.nodes=1")),
    ("nodes-negative", _sets("network.nodes=-5")),
    ("nodes-huge", _sets("network.nodes=100000000000")),
    ("nodes-text", _sets("network.nodes=x")),
    ("nodes-float", _sets("network.nodes=2.5")),
    ("topology-unknown", _sets("network.topology=ring")),
    ("degree-too-big", _sets("network.topology=random", "network.degree=500")),
    ("degree-zero", _sets("network.degree=0")),
    ("jitter-negative", _sets("network.jitter=-1")),
    ("jitter-int64", _sets(f"network.jitter={BIG}")),
    ("delay-zero", _sets("network.delay=0")),
    ("delay-uniform-reversed", _sets('network.delay={dist="uniform", low=10, high=5}')),
    ("delay-exponential-inf", _sets('network.delay={dist="exponential", mean=inf}')),
    ("delay-lognormal-nan", _sets('network.delay={dist="lognormal", median=nan, sigma=1}')),
    ("delay-pareto-cap", _sets('network.delay={dist="pareto", alpha=1.5, scale=10, cap=5}')),
    ("delay-unknown", _sets('network.delay={dist="weird"}')),
    ("delay-int64", _sets(f'network.delay={{dist="constant", value={BIG}}}')),
    ("fanout-zero", _sets("protocol.fanout=0")),
    ("fanout-too-big", _sets("protocol.fanout=500")),
    ("source-outside", _sets("protocol.source=5000")),
    ("source-negative", _sets("protocol.source=-3")),
    ("period-zero", _sets("protocol.period=0")),
    ("mode-unknown", _sets("protocol.mode=sideways")),
    ("protocol-unknown-param", _sets("protocol.nope=1")),
    ("causality-unknown", _sets("log.causality=clocks")),
    ("causality-vector-too-many-nodes", _sets("log.causality=vector", "network.nodes=30000")),
    ("loss-above-one", _sets("faults.loss=1.5")),
    ("loss-negative", _sets("faults.loss=-0.1")),
    ("loss-nan", _sets("faults.loss=nan")),
    ("duplicate-inf", _sets("faults.duplicate=inf")),
    ("corrupt-two", _sets("faults.corrupt=2")),
    ("partition-range-outside", _sets('faults.partitions=[{a="0-5000"}]')),
    ("partition-b-outside", _sets('faults.partitions=[{a="0-9", b=[999]}]')),
    ("partition-range-text", _sets('faults.partitions=[{a="x-y"}]')),
    ("partition-range-straddles", _sets('faults.partitions=[{a="190-210"}]')),
    ("partition-negative", _sets("faults.partitions=[{a=[-3]}]")),
    ("partition-reversed", _sets('faults.partitions=[{a="5-2"}]')),
    ("partition-window", _sets('faults.partitions=[{a="0-9", start=100, end=50}]')),
    ("partition-direction", _sets('faults.partitions=[{a="0-9", direction="sideways"}]')),
    ("partition-int64-id", _sets(f"faults.partitions=[{{a=[{BIG}]}}]")),
    ("partition-empty", _sets('faults.partitions=[{a=""}]')),
    ("partition-start-int64", _sets(f'faults.partitions=[{{a="0-9", start={BIG}}}]')),
    ("partitions-not-list", _sets("faults.partitions=3")),
    ("crash-nodes-outside", _sets("faults.crashes=[{at=10, nodes=[5000]}]")),
    ("crash-nodes-negative", _sets("faults.crashes=[{at=10, nodes=[-3]}]")),
    ("crash-range-straddles", _sets('faults.crashes=[{at=10, nodes="190-210"}]')),
    ("crash-node-outside", _sets("faults.crashes=[{at=10, node=200}]")),
    ("crash-at-huge", _sets("faults.crashes=[{at=1000000000000000000000000000000, node=1}]")),
    ("crash-no-target", _sets("faults.crashes=[{at=10}]")),
    ("crash-two-targets", _sets("faults.crashes=[{at=10, node=1, fraction=0.5}]")),
    ("crash-fraction", _sets("faults.crashes=[{at=10, fraction=1.5}]")),
    ("crash-recover-before", _sets("faults.crashes=[{at=10, node=1, recover_at=5}]")),
    ("crash-at-negative", _sets("faults.crashes=[{at=-1, node=1}]")),
    ("churn-rate-inf", _sets('faults.churn={model="poisson", rate=inf}')),
    ("churn-rate-zero", _sets('faults.churn={model="poisson", rate=0}')),
    ("churn-sessions-missing", _sets('faults.churn={model="sessions"}')),
    ("churn-trace-missing", _sets('faults.churn={model="trace"}')),
    ("churn-trace-dev-zero", _sets('faults.churn={model="trace", trace="/dev/zero"}')),
    ("churn-trace-absent", _sets('faults.churn={model="trace", trace="/nonexistent.csv"}')),
    ("churn-trace-dir", _sets('faults.churn={model="trace", trace="/"}')),
    ("churn-session-inf", _sets(
        'faults.churn={model="sessions", session={dist="exponential", mean=inf}, '
        'downtime={dist="exponential", mean=1}}'
    )),
    ("churn-session-params", _sets(
        'faults.churn={model="sessions", session={dist="pareto", alpha=1}, '
        'downtime={dist="exponential", mean=1}}'
    )),
    ("churn-initial", _sets('faults.churn={model="poisson", rate=1, initial=2}')),
    ("churn-model", _sets('faults.churn={model="magic"}')),
    ("faults-unknown", _sets("faults.traitors=1")),
    ("byzantine-not-a-table", _sets("faults.byzantine=1")),
    ("byzantine-range-outside", _sets('faults.byzantine={nodes="0-200"}')),
    ("byzantine-id-outside", _sets("faults.byzantine={nodes=[3, 200]}")),
    ("byzantine-range-garbage", _sets('faults.byzantine={nodes="a-b"}')),
    ("byzantine-to-outside", _sets('faults.byzantine={nodes="0", to="150-250"}')),
    ("byzantine-nodes-and-fraction", _sets('faults.byzantine={nodes="0", fraction=0.1}')),
    ("byzantine-fraction-zero", _sets("faults.byzantine={fraction=0}")),
    ("byzantine-behaviour-unknown", _sets('faults.byzantine={nodes="0", behaviour="liar"}')),
    ("byzantine-behaviour-no-nodes", _sets(
        'experiment.protocol="gossip.average"', 'faults.byzantine={behaviour="liar"}'
    )),
    ("byzantine-probability", _sets('faults.byzantine={nodes="0", drop=1.5}')),
    ("byzantine-types-typo", _sets('faults.byzantine={nodes="0", drop=1.0, types=["Exchnage"]}')),
    ("byzantine-unknown-field", _sets('faults.byzantine={nodes="0", lie=1}')),
    ("byzantine-window", _sets('faults.byzantine={nodes="0", start=10, end=5}')),
    ("log-level", _sets("log.level=verbose")),
    ("log-batch", _sets("log.batch_rows=10")),
    ("section-unknown", _sets("nosuch.key=1")),
    ("set-no-equals", ("--set", "faults.loss")),
    ("set-no-key", ("--set", "=1")),
    ("set-one-part", ("--set", "loss=0.1")),
]

# Churn traces, written by the fixture into {tmp}.
TRACES = {
    "trace-binary": b"\xff\xfe\x00\x01garbage\x80\x81\n",
    "trace-node-outside": b"time,node,event\n10,5000,leave\n",
    "trace-time-negative": b"-1,3,leave\n",
    "trace-time-int64": f"{BIG}0000000000,3,leave\n".encode(),
    "trace-event": b"10,3,explode\n",
    "trace-columns": b"10,3\n",
    "trace-not-int": b"ten,3,leave\n",
}
for name in [*TRACES, "trace-fifo"]:
    OVERRIDES.append(
        (name, _sets(f'faults.churn={{model="trace", trace="{{tmp}}/{name}.csv"}}'))
    )

CASES: list[Case] = []
for cid, args in OVERRIDES:
    CASES.append(Case(f"run-{cid}", ("run", "{exp}", "--out", "{out}", *args)))
    CASES.append(Case(f"sweep-{cid}", ("sweep", "{exp}", "--out", "{out}", "--no-progress",
                                       *args)))


def _corrupt_runs(out: Path) -> None:
    (out / "bad" / "runs.parquet").write_bytes(b"PAR1 this is not a table")


def _truncate_part(out: Path) -> None:
    part = next((out / "bad" / "events").glob("run_id=*/part-*.parquet"))
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])


def _runs_dir_is_file(out: Path) -> None:
    shutil.rmtree(out / "bad")
    (out / "bad").write_text("a file where the results directory should be")


CASES += [
    Case("file-missing", ("run", "{tmp}/nope.toml", "--out", "{out}")),
    Case("file-directory", ("run", "{tmp}", "--out", "{out}")),
    Case("file-binary", ("run", "{tmp}/binary.toml", "--out", "{out}")),
    Case("file-not-toml", ("run", "{tmp}/broken.toml", "--out", "{out}")),
    Case("file-dev-zero", ("run", "/dev/zero", "--out", "{out}")),
    Case("file-fifo", ("run", "{tmp}/fifo.toml", "--out", "{out}")),
    Case("file-unknown-section", ("run", "{tmp}/section.toml", "--out", "{out}")),
    Case("file-too-large", ("run", "{tmp}/large.toml", "--out", "{out}")),
    Case("file-empty", ("run", "{tmp}/empty.toml", "--out", "{out}")),
    Case("sweep-file-binary", ("sweep", "{tmp}/binary.toml", "--out", "{out}")),
    Case("sweep-file-fifo", ("sweep", "{tmp}/fifo.toml", "--out", "{out}")),
    Case("backend-unknown", ("run", "{exp}", "--out", "{out}", "--backend", "cloud")),
    Case("router-unknown", ("run", "{exp}", "--out", "{out}", "--router", "middle")),
    Case("shards-local", ("run", "{exp}", "--out", "{out}", "--shards", "4")),
    Case("shard-size-local", ("run", "{exp}", "--out", "{out}", "--shard-size", "10")),
    Case("address-local", ("run", "{exp}", "--out", "{out}", "--address", "127.0.0.1:1")),
    Case("shards-zero-ray", ("run", "{exp}", "--out", "{out}", "--backend", "ray",
                             "--shards", "0")),
    Case("shard-size-zero-ray", ("run", "{exp}", "--out", "{out}", "--backend", "ray",
                                 "--shard-size", "0")),
    Case("router-unknown-ray", ("run", "{exp}", "--out", "{out}", "--backend", "ray",
                                "--router", "middle")),
    Case("transport-local", ("run", "{exp}", "--out", "{out}", "--transport", "mesh")),
    Case("transport-unknown-ray", ("run", "{exp}", "--out", "{out}", "--backend", "ray",
                                   "--transport", "pigeons")),
    Case("transport-mesh-router-actor", ("run", "{exp}", "--out", "{out}", "--backend", "ray",
                                         "--router", "actor", "--transport", "mesh")),
    Case("seed-option-negative", ("run", "{exp}", "--out", "{out}", "--seed", "-1")),
    Case("out-proc", ("run", "{exp}", "--out", "/proc/raysim-x")),
    Case("sweep-out-proc", ("sweep", "{exp}", "--out", "/proc/raysim-x")),
    Case("out-file", ("run", "{exp}", "--out", "{tmp}/binary.toml")),
    Case("sweep-out-file", ("sweep", "{exp}", "--out", "{tmp}/binary.toml")),
    Case("runs-corrupt", ("run", "{exp}", "--out", "{out}"), _corrupt_runs),
    Case("sweep-runs-corrupt", ("sweep", "{exp}", "--out", "{out}"), _corrupt_runs),
    Case("results-is-file", ("run", "{exp}", "--out", "{out}"), _runs_dir_is_file),
    Case("sweep-results-is-file", ("sweep", "{exp}", "--out", "{out}"), _runs_dir_is_file),
    Case("sweep-seeds-huge", ("sweep", "{exp}", "--out", "{out}", "--set",
                              "sweep.seeds=10000000")),
    Case("sweep-seeds-zero", ("sweep", "{exp}", "--out", "{out}", "--set", "sweep.seeds=0")),
    Case("sweep-seeds-negative", ("sweep", "{exp}", "--out", "{out}", "--set",
                                  "sweep.seeds=[-1]")),
    Case("sweep-seeds-int64", ("sweep", "{exp}", "--out", "{out}", "--set",
                               f"sweep.seeds=[{BIG}]")),
    Case("sweep-seeds-text", ("sweep", "{exp}", "--out", "{out}", "--set", "sweep.seeds=x")),
    Case("sweep-product-huge", ("sweep", "{exp}", "--out", "{out}", "--set", "sweep.seeds=1000",
                                "--set", "sweep.faults.loss=[" + ",".join(
                                    str(i / 1000) for i in range(200)) + "]")),
    Case("sweep-bad-point", ("sweep", "{exp}", "--out", "{out}", "--set",
                             "sweep.network.nodes=[200, 1]")),
    Case("sweep-node-set-at-one-point", ("sweep", "{exp}", "--out", "{out}",
                                         "--set", 'faults.partitions=[{a="150-199"}]',
                                         "--set", "sweep.network.nodes=[200, 100]")),
    Case("sweep-crash-at-one-point", ("sweep", "{exp}", "--out", "{out}",
                                      "--set", "faults.crashes=[{at=5, nodes=[150]}]",
                                      "--set", "sweep.network.nodes=[200, 100]")),
    Case("sweep-name-axis", ("sweep", "{exp}", "--out", "{out}", "--set",
                             'sweep.experiment.name=["a", "b"]')),
    Case("sweep-seed-axis", ("sweep", "{exp}", "--out", "{out}", "--set",
                             "sweep.experiment.seed=[1, 2]")),
    Case("sweep-axis-empty", ("sweep", "{exp}", "--out", "{out}", "--set",
                              "sweep.network.nodes=[]")),
    Case("sweep-axis-not-list", ("sweep", "{exp}", "--out", "{out}", "--set",
                                 "sweep.network.nodes=5")),
    Case("sweep-axis-duplicate", ("sweep", "{exp}", "--out", "{out}", "--set",
                                  "sweep.network.nodes=[200, 200]")),
    Case("sweep-axis-unknown-section", ("sweep", "{exp}", "--out", "{out}", "--set",
                                        "sweep.nosuch.x=[1, 2]")),
    Case("sweep-max-parallel", ("sweep", "{exp}", "--out", "{out}", "--max-parallel", "0")),
    Case("report-missing", ("report", "{tmp}/nowhere")),
    Case("report-file", ("report", "{tmp}/binary.toml")),
    Case("report-no-runs", ("report", "{tmp}")),
    Case("report-runs-corrupt", ("report", "{out}/bad"), _corrupt_runs),
    Case("report-truncated-part", ("report", "{out}/bad"), _truncate_part),
]


def tree_hash(root: Path) -> str:
    """A hash of every path (files, folders, links) and file content under ``root``."""
    h = hashlib.sha256()
    if root.is_file():
        h.update(b"F" + root.read_bytes())
        return h.hexdigest()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        h.update(f"D {rel}\n".encode())
        for name in sorted(filenames):
            p = Path(dirpath) / name
            h.update(f"F {rel}/{name} ".encode())
            h.update(p.read_bytes() if p.is_file() else b"<special>")
    return h.hexdigest()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding one finished run of the base experiment."""
    root = tmp_path_factory.mktemp("finished")
    exp = root / "bad.toml"
    exp.write_text(BASE)
    r = runner.invoke(app, ["run", str(exp), "--out", str(root / "results")])
    assert r.exit_code == 0, r.output
    return root / "results"


@pytest.fixture
def world(tmp_path: Path, finished: Path) -> dict[str, Path]:
    """The experiment file, a copy of the finished results, and the hostile files."""
    exp = tmp_path / "bad.toml"
    exp.write_text(BASE)
    out = tmp_path / "results"
    shutil.copytree(finished, out)
    (tmp_path / "binary.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 50)
    (tmp_path / "broken.toml").write_text("[experiment\nname = ")
    (tmp_path / "section.toml").write_text(BASE + "\n[extras]\nx = 1\n")
    (tmp_path / "large.toml").write_text(BASE + "#" * (2 << 20) + "\n")
    (tmp_path / "empty.toml").write_text("")
    os.mkfifo(tmp_path / "fifo.toml")
    os.mkfifo(tmp_path / "trace-fifo.csv")
    for name, data in TRACES.items():
        (tmp_path / f"{name}.csv").write_bytes(data)
    return {"exp": exp, "out": out, "tmp": tmp_path}


def _fill(args: tuple[str, ...], world: dict[str, Path]) -> list[str]:
    subs = {k: str(v) for k, v in world.items()}
    return [a.replace("{exp}", subs["exp"]).replace("{out}", subs["out"])
            .replace("{tmp}", subs["tmp"]) for a in args]


def _check(code: int, stderr: str, output: str, before: str, after: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, output
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in output and "Traceback" not in stderr
    assert after == before, "the results directory changed"


def test_there_are_at_least_100_cases() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: Case, world: dict[str, Path]
) -> None:
    if case.setup is not None:
        case.setup(world["out"])
    watched = [world["out"], world["tmp"] / "binary.toml"]
    before = [tree_hash(p) for p in watched]
    r = runner.invoke(app, _fill(case.args, world))
    assert isinstance(r.exception, SystemExit), r.exception  # no uncaught exception
    _check(r.exit_code, r.stderr, r.output, str(before), str([tree_hash(p) for p in watched]))


SUBPROCESS_CASES = ["file-binary", "run-partition-range-outside", "sweep-node-set-at-one-point",
                    "sweep-runs-corrupt", "report-truncated-part"]


@pytest.mark.parametrize("cid", SUBPROCESS_CASES)
def test_bad_input_through_the_installed_script(cid: str, world: dict[str, Path]) -> None:
    """The same checks through the ``raysim`` script (no Ray is started: it would show)."""
    case = next(c for c in CASES if c.id == cid)
    if case.setup is not None:
        case.setup(world["out"])
    before = tree_hash(world["out"])
    p = subprocess.run([RAYSIM, *_fill(case.args, world)], capture_output=True, text=True,
                       timeout=120, check=False)
    _check(p.returncode, p.stderr, p.stdout + p.stderr, before, tree_hash(world["out"]))
