"""`raysim run` as a user sees it: a summary that adds up, the effective protocol, a progress
bar on terminals only, a note when a row is replaced, ``--version``."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from raysim.analysis import report
from raysim.cli import app
from tests.conftest import canonical

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "experiments" / "gossip_convergence.toml")
RAYSIM = str(Path(sys.executable).with_name("raysim"))
FAULTY = [
    "--set", "network.nodes=80", "--set", "experiment.duration=9050",
    "--set", 'experiment.stop_when=""', "--set", "faults.loss=0.1",
    "--set", "faults.duplicate=0.1", "--set", "faults.corrupt=0.05",
    "--set", 'faults.partitions=[{start=2000, end=4000, a="0-39"}]',
    "--set", "faults.crashes=[{nodes=[3, 7], at=1000, recover_at=5000}, {fraction=0.1, at=6000}]",
]
runner = CliRunner()

TERMS = re.compile(
    r"messages sent (\d+)(?: \+ duplicated (\d+))? = delivered (\d+) \+ lost (\d+) "
    r"\+ partitioned (\d+)\n\s+\+ dropped at crashed nodes (\d+) \+ corrupt (\d+) "
    r"\+ in flight at the end (\d+)"
)


def test_the_summary_names_every_fate_and_adds_up(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", EXAMPLE, "--out", str(tmp_path), *FAULTY])
    assert r.exit_code == 0, r.output
    m = TERMS.search(r.stdout)
    assert m, r.stdout
    sent, dup, delivered, lost, part, crashed, corrupt, flight = (int(x or 0) for x in m.groups())
    assert min(dup, lost, part, crashed, corrupt, flight) > 0  # every fault left its mark
    assert sent + dup == delivered + lost + part + crashed + corrupt + flight
    # In flight, counted independently from the log: copies on the wire at the end.
    row = pd.read_parquet(tmp_path / "gossip_convergence" / "runs.parquet").iloc[0]
    df = canonical(next((tmp_path / "gossip_convergence" / "events").glob("run_id=*")))
    wire = df[df["kind"].isin(["send", "duplicate"]) & df["value"].notna()]
    assert flight == int((wire["time"] + wire["value"] >= row["end_time"]).sum())
    assert (df["kind"] == "deliver").sum() == delivered and row["in_flight"] == flight


def test_a_mode_override_is_recorded_as_the_protocol_it_runs(tmp_path: Path) -> None:
    args = ["run", EXAMPLE, "--out", str(tmp_path), "--set", "network.nodes=60"]
    r = runner.invoke(app, [*args, "--set", "protocol.mode=push"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("run ") and ": gossip.push, 60 nodes" in r.stdout
    runs = pd.read_parquet(tmp_path / "gossip_convergence" / "runs.parquet")
    assert list(runs["protocol"]) == ["gossip.push"]
    assert list(runs["protocol.mode"]) == ["push"]
    assert list(runs["experiment.protocol"]) == ["gossip.push_pull"]  # as written
    page = report.build(tmp_path / "gossip_convergence")
    assert "gossip.push ·" in page and "gossip.push_pull" not in page.split("</h1>")[1][:400]


def test_replacing_a_row_says_so_once(tmp_path: Path) -> None:
    args = ["run", EXAMPLE, "--out", str(tmp_path), "--set", "network.nodes=50"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "replaced" not in first.stdout
    again = runner.invoke(app, args)
    notes = [line for line in again.stdout.splitlines() if "replaced" in line]
    assert len(notes) == 1 and "local backend" in notes[0] and "same run_id" in notes[0]


def _run_on_a_terminal(args: list[str]) -> str:
    """Run the raysim script with stdout and stderr on a pseudo-terminal; all it printed."""
    main, sub = pty.openpty()
    # A fresh pseudo-terminal is 0 columns wide; make it the size of a real one.
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([RAYSIM, *args], stdout=sub, stderr=sub, cwd=ROOT)
    os.close(sub)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def test_a_run_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    args = ["run", EXAMPLE, "--out", str(tmp_path), "--set", "network.nodes=3000",
            "--set", 'experiment.stop_when=""', "--set", "experiment.duration=40000"]
    shown = _run_on_a_terminal(args)
    bars = re.findall(r"(\d+)%\|[^|]*\| ([\d.]+)/40\.0 virtual s \[[^\]]*events/s", shown)
    assert bars, shown
    assert "messages sent" in shown
    piped = subprocess.run([RAYSIM, *args], capture_output=True, text=True, cwd=ROOT)
    assert piped.returncode == 0
    assert "virtual s" not in piped.stderr + piped.stdout and "%|" not in piped.stderr


def test_a_mesh_run_shows_its_progress_window_by_window(
    ray_session: None, tmp_path: Path
) -> None:
    import ray

    args = ["run", EXAMPLE, "--out", str(tmp_path), "--set", "network.nodes=3000",
            "--set", 'experiment.stop_when=""', "--set", "experiment.duration=40000",
            "--backend", "ray", "--shards", "2", "--transport", "mesh",
            "--address", ray.get_runtime_context().gcs_address]
    shown = _run_on_a_terminal(args)
    shown_s = [float(v) for v in re.findall(r"\d+%\|[^|]*\| ([\d.]+)/40\.0 virtual s", shown)]
    assert shown_s == sorted(shown_s), shown
    # a time between the start and the end: read from shard 0 while the run's one call ran
    assert any(0 < v < 40.0 for v in shown_s), shown
    assert "messages sent" in shown


def test_version() -> None:
    from raysim._version import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"raysim {__version__}"
