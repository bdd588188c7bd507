"""Faults injected into the runtime: a shard actor killed mid-run, a killed ``raysim run`` driver.

Nothing half-written may stay behind: the dead-actor run ends with one line naming the run
and a failed row; the killed driver's shard actors stop and its staging folder goes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from raysim.runtime.staging import STAGING, Staging, owner_gone, remove_dead

RAYSIM = str(Path(sys.executable).with_name("raysim"))
ROOT = Path(__file__).resolve().parents[1]

LONG = """\
[experiment]
name = "long"
protocol = "gossip.push_pull"
seed = 4
duration = "900s"

[protocol]
period = 50

[network]
nodes = 20000
delay = { dist = "uniform", low = 5, high = 30 }
"""


def _shard_actors() -> list[psutil.Process]:
    """The shard actor processes of this test session's Ray (others may share the machine)."""
    tmp = os.environ.get("RAYSIM_TEST_RAY_TMP", "/tmp/raysim-test-ray")
    out = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = p.info.get("cmdline") or []
            if cmd and cmd[0].startswith("ray::_ShardWorker"):
                parent = p.parent()
                if parent is not None and any(tmp in a for a in parent.cmdline()):
                    out.append(p)
    return out


def _start_run(tmp_path: Path, transport: str) -> tuple[subprocess.Popen[str], Path]:
    import ray

    exp = tmp_path / "long.toml"
    exp.write_text(LONG)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [RAYSIM, "run", str(exp), "--out", str(out), "--backend", "ray", "--shards", "2",
         "--transport", transport, "--address", ray.get_runtime_context().gcs_address],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    return proc, out / "long" / "events"


def _wait_for_parts(proc: subprocess.Popen[str], events: Path) -> Path:
    """Until the run's staging folder exists and both shard actors run."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the fault: {proc.communicate()}")
        staging = [p for p in events.glob(".staging-*") if STAGING.match(p.name)]
        if staging and len(_shard_actors()) == 2:
            return staging[0]
        time.sleep(0.05)
    pytest.fail("the run never started writing")


def test_staging_lock_tells_live_from_dead(tmp_path: Path) -> None:
    live = Staging(tmp_path, "r1")
    dead = Staging(tmp_path, "r2")
    dead.close()  # as if its process had died: the lock is free
    assert not owner_gone(live.path) and owner_gone(dead.path)
    assert remove_dead(tmp_path) == 1
    assert live.path.exists() and not dead.path.exists()
    live.discard()
    assert not live.path.exists() and owner_gone(live.path)


# the socket mesh (one call per shard for the whole run) and Ray's task path (one per window)
TRANSPORTS = pytest.mark.parametrize("transport", ["mesh", "tasks"])


@TRANSPORTS
def test_a_dead_shard_actor_fails_the_run_in_one_line(
    ray_session: None, tmp_path: Path, transport: str
) -> None:
    proc, events = _start_run(tmp_path, transport)
    _wait_for_parts(proc, events)
    victim = _shard_actors()[0]
    victim.kill()  # kill -9 of one shard actor's process
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    ours = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(ours) == 1 and "shard actor" in ours[0] and "died" in ours[0], err
    assert "Traceback" not in err
    runs = pd.read_parquet(events.parent / "runs.parquet")
    assert list(runs["status"]) == ["failed"]
    assert runs.loc[0, "run_id"] in ours[0]
    assert "died" in runs.loc[0, "error"]
    assert list(events.iterdir()) == []  # no staging folder, no half-written run


@TRANSPORTS
def test_a_killed_driver_leaves_nothing_behind(
    ray_session: None, tmp_path: Path, transport: str
) -> None:
    proc, events = _start_run(tmp_path, transport)
    staging = _wait_for_parts(proc, events)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    # The shard actors see their driver's lock go and stop; Ray reaps them.
    deadline = time.monotonic() + 60
    while _shard_actors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _shard_actors(), "shard actors outlived their driver"
    assert owner_gone(staging)
    # Whatever an actor had no chance to remove, the next run into the directory removes.
    remove_dead(events)
    assert not [p for p in events.iterdir() if p.name.startswith(".staging-")]
    assert not (events.parent / "runs.parquet").exists()


FAILING = """\
from raysim.api.protocol import Protocol, register


@register("test.{module}")
class Relay(Protocol):
    \"\"\"Every node pings the next; node 7 (on the second of two shards) fails at 300.\"\"\"

    def on_start(self, ctx):
        ctx.set_timer(20 + self.node, "ping")

    def on_timer(self, ctx, tag):
        ctx.send((self.node + 1) % ctx.n_nodes, "ping")
        ctx.set_timer(40, "ping")

    def on_message(self, ctx, src, msg):
        if self.node == 7 and ctx.now >= 300:
            raise RuntimeError("boom on the second shard")
"""


@TRANSPORTS
def test_a_failing_handler_on_one_shard_fails_the_run_with_its_own_error(
    ray_session: None, tmp_path: Path, transport: str
) -> None:
    from raysim.experiments import config, runner

    module = f"relay_{transport}_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(FAILING.replace("{module}", module))
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f'[experiment]\nname = "relay"\nprotocol = "test.{module}"\nmodules = ["{module}"]\n'
        "seed = 3\nduration = 2000\n\n[network]\nnodes = 10\ndelay = 10\n"
    )
    cfg = config.load(exp)
    local = runner.run(cfg, tmp_path / "local")
    res = runner.run(cfg, tmp_path / "ray", backend="ray", shards=2, transport=transport)
    assert local.status == "failed" and local.error is not None
    assert res.status == "failed" and res.error is not None
    # the cause, where and when it happened, not the other shard's broken mesh
    assert res.error.splitlines()[0] == local.error.splitlines()[0]
    assert "at node 7, time 3" in res.error.splitlines()[0]
    assert "boom on the second shard" in res.error
    assert "MeshBroken" not in res.error
    row = pd.read_parquet(tmp_path / "ray" / "relay" / "runs.parquet").iloc[0]
    assert row["status"] == "failed"
    assert list((tmp_path / "ray" / "relay" / "events").iterdir()) == []
