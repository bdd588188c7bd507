"""The README's walk-through is a test: its files and commands, run as written.

The section "Writing your own protocol: a walk-through" is cut into its files (a code block
after a line naming `my_protocol/…`) and its shell block; the files are written into a
fresh folder (with `.venv` linked to this checkout's), the commands run there, and the
event logs of the local run, the Ray run with two shards and each sweep run (rerun with
its seed on the local backend) must be identical.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pandas as pd

from tests.conftest import canonical

ROOT = Path(__file__).resolve().parents[1]
TITLE = "## Writing your own protocol: a walk-through"


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(TITLE)
    end = text.find("\n## ", start + len(TITLE))
    return text[start:end if end >= 0 else len(text)]


def walkthrough_files(section: str) -> dict[str, str]:
    """``path -> text`` of every python/toml block: the file is the last ``my_protocol/…``
    the text since the previous block names."""
    files, last = {}, 0
    for m in re.finditer(r"```(?:python|toml)\n(.*?)```", section, re.S):
        names = re.findall(r"`(my_protocol/[\w.]+)`", section[last:m.start()])
        assert names, f"no file named before the block at {m.start()}"
        files[names[-1]] = m.group(1)
        last = m.end()
    return files


def walkthrough_commands(section: str) -> list[str]:
    """The lines of the section's shell blocks."""
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [ln for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]


def _run(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _log(results: Path, run_id: str) -> pd.DataFrame:
    return canonical(results / "lamport" / "events" / f"run_id={run_id}")


def test_the_readme_walkthrough_runs_and_every_backend_writes_the_same_log(
    tmp_path: Path,
) -> None:
    section = _section()
    files = walkthrough_files(section)
    assert set(files) == {"my_protocol/lamport.py", "my_protocol/test_lamport.py",
                          "my_protocol/lamport.toml"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = dict(os.environ)
    env["RAYSIM_RAY_TMP"] = env.get("RAYSIM_TEST_RAY_TMP", "/tmp/raysim-test-ray") + "-readme"
    env.pop("RAY_ADDRESS", None)
    commands = walkthrough_commands(section)
    assert len(commands) == 4 and any("--backend ray --shards 2" in c for c in commands)
    out = [_run(cmd, tmp_path, env) for cmd in commands]
    assert "3 passed" in out[0].stdout

    local = pd.read_parquet(tmp_path / "results/local/lamport/runs.parquet")
    ray = pd.read_parquet(tmp_path / "results/ray/lamport/runs.parquet")
    (run_id,) = local["run_id"]
    assert list(ray["run_id"]) == [run_id] and ray["shards"].iloc[0] == 2
    row = local.iloc[0]
    assert row["experiment.protocol_class"] == "lamport:Lamport"
    assert row["experiment.modules"] == '["lamport"]'
    assert row["metric.violations"] == 0 and row["metric.violations.monotone"] == 0
    log = _log(tmp_path / "results/local", run_id)
    assert (log["kind"] == "deliver").sum() > 10 and (log["name"] == "clock").sum() > 40
    pd.testing.assert_frame_equal(_log(tmp_path / "results/ray", run_id), log)

    sweep = pd.read_parquet(tmp_path / "results/sweep/lamport/runs.parquet")
    assert len(sweep) == 2 and set(sweep["status"]) == {"ok"}
    for rid, seed in zip(sweep["run_id"], sweep["seed"], strict=True):
        again = tmp_path / f"results/seed-{seed}"
        _run(f".venv/bin/raysim run my_protocol/lamport.toml --seed {seed} --out {again}",
             tmp_path, env)
        assert list(pd.read_parquet(again / "lamport/runs.parquet")["run_id"]) == [rid]
        pd.testing.assert_frame_equal(_log(tmp_path / "results/sweep", rid), _log(again, rid))
