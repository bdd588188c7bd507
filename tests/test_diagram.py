"""Space-time diagrams and the ShiViz export: content, command line, headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim.analysis import causality as rcz
from raysim.analysis import diagram as dg
from raysim.cli import app

LAMPORT = str(Path(__file__).parent.parent / "experiments" / "lamport_three.toml")
runner = CliRunner()


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The course's three-process Lamport run, with loss and duplication added."""
    out = tmp_path_factory.mktemp("three")
    r = runner.invoke(app, ["run", LAMPORT, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out / "lamport_three"


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random Lamport traffic on 6 nodes with loss, duplicates and a crash."""
    out = tmp_path_factory.mktemp("faulty")
    r = runner.invoke(app, [
        "run", LAMPORT, "--out", str(out), "--set", "network.nodes=6",
        "--set", "protocol.script=[]", "--set", "protocol.interval=20.0",
        "--set", "protocol.until=300", "--set", "experiment.duration=400",
        "--set", "faults.loss=0.2", "--set", "faults.duplicate=0.2",
        "--set", "faults.crashes=[{node = 5, at = 150}]",
    ])
    assert r.exit_code == 0, r.output
    return out / "lamport_three"


def test_parse_nodes() -> None:
    assert dg.parse_nodes("0-3,7, 5") == [0, 1, 2, 3, 5, 7]
    for bad in ("1-", "a", "3-1", ""):
        with pytest.raises(ValueError):
            dg.parse_nodes(bad)


def test_diagram_draws_every_event_and_message(three: Path) -> None:
    data = dg.load_diagram(three)
    fig, graph = dg.build_figure(data)
    events = fig.data[graph["trace"]]
    hb = rcz.happens_before(data.events)
    assert len(events.x) == len(hb) == len(graph["prev"])
    assert graph["parent"] == hb.events["parent"].tolist()
    delivered = next(t for t in fig.data if t.name == "messages")
    n_msgs = int((data.events["kind"] == "deliver").sum())
    assert len(delivered.x) == 3 * n_msgs  # one segment (and a gap) per message
    assert len(fig.layout.annotations) == n_msgs  # small: every arrow has a head
    # Each event's hover names its kind and time; stamped sends show the protocol's clock.
    assert all(re.search(r"<b>\w+</b> at node \d+, t = \d+", h) for h in events.hovertext)
    assert any("lamport (protocol): 9" in h for h in events.hovertext)
    assert "9" in list(events.text)


def test_faults_are_drawn_as_crossed_arrows_and_rings(faulty: Path) -> None:
    data = dg.load_diagram(faulty)
    fig, _ = dg.build_figure(data)
    names = {t.name for t in fig.data}
    assert {"messages not delivered", "dropped here", "duplicate delivery", "crash"} <= names
    kinds = data.events["kind"]
    lost = int((kinds == "drop").sum() + (kinds == "corrupt").sum())
    crosses = next(t for t in fig.data if t.name == "dropped here")
    assert len(crosses.x) == lost > 0


def test_node_and_time_filters_are_applied_and_other_nodes_get_a_lane(faulty: Path) -> None:
    data = dg.load_diagram(faulty, nodes=[1, 3], t_from=50, t_to=250)
    ev = data.events
    assert set(ev["node"]) <= {1, 3} and ev["time"].between(50, 250).all()
    everything = dg.load_diagram(faulty)
    full = everything.events
    expect = full[full["node"].isin([1, 3]) & full["time"].between(50, 250)]
    assert len(ev) == len(expect)
    inc = data.incoming
    assert len(inc) and not inc["node"].isin([1, 3]).any()
    fig, _ = dg.build_figure(data)
    assert list(fig.layout.yaxis.ticktext) == ["node 1", "node 3", "other nodes"]


def test_cli_diagram_and_bad_arguments(three: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.html"
    r = runner.invoke(app, ["diagram", str(three), "--nodes", "0-1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "plotly_click" in page
    assert "<script src=" not in page  # plotly.js inline: works offline
    for args, fragment in [
        (["--nodes", "x"], "--nodes 'x': bad node range"),
        (["--run", "nope"], "--run nope: no such ok run"),
        (["--from", "50", "--to", "10"], "--to 10: must not be below --from 50"),
        (["--out", str(tmp_path / "no" / "d.html")], "no such directory"),
    ]:
        r = runner.invoke(app, ["diagram", str(three), *args])
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], r.stderr
    r = runner.invoke(app, ["diagram", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no such results directory" in r.stderr


def test_shiviz_export(three: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["export", "shiviz", str(three)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == dg.SHIVIZ_REGEX and lines[1] == ""
    pattern = re.compile(r'(?P<host>\S+) "(?P<event>[^"]*)" (?P<clock>\{.*\})')
    last: dict[str, int] = {}
    data = dg.load_diagram(three)
    assert len(lines) - 2 == len(rcz.happens_before(data.events))
    for line in lines[2:]:
        m = pattern.fullmatch(line)
        assert m, line
        clock = json.loads(m["clock"])
        host = m["host"]
        assert clock[host] == last.get(host, 0) + 1  # ShiViz: each host ticks by one
        last[host] = clock[host]
    recv = next(line for line in lines if "deliver Stamped from node 2" in line)
    assert '"node2":' in recv
    out = tmp_path / "log.txt"
    r = runner.invoke(app, ["export", "shiviz", str(three), "--out", str(out)])
    assert r.exit_code == 0 and out.read_text() == "\n".join(lines) + "\n"


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (Debian package 'chromium')")
    return exe


def _run_chromium(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="raysim-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_diagram_renders_and_highlights_the_causal_past_in_chromium(
    three: Path, tmp_path: Path
) -> None:
    exe = _chromium()
    out = tmp_path / "d.html"
    assert runner.invoke(app, ["diagram", str(three), "--out", str(out)]).exit_code == 0
    hb = rcz.happens_before(dg.load_diagram(three).events)
    chosen = hb.find(0, len(hb.events[hb.events["node"] == 0]) // 2)
    dom = _run_chromium(exe, "--dump-dom", f"{out.as_uri()}#select={chosen}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'class="main-svg"' in html and "scatterlayer" in html
    attrs = dict(re.findall(r'data-(events|selected|past|future)="(\d+)"', html))
    assert int(attrs["events"]) == len(hb)
    assert int(attrs["selected"]) == chosen
    assert int(attrs["past"]) == len(hb.past_of(chosen))
    assert int(attrs["future"]) == len(hb.future_of(chosen))
    shot = tmp_path / "d.png"
    r = _run_chromium(exe, "--window-size=1200,500", f"--screenshot={shot}", out.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_empty_selection_is_one_clear_error(three: Path) -> None:
    r = runner.invoke(app, ["diagram", str(three), "--from", "5000"])
    assert r.exit_code == 2 and "has no events there" in r.stderr
    assert isinstance(dg.load_diagram(three, t_from=5000).events, pd.DataFrame)


def test_diagram_of_20_nodes_of_a_100k_node_gossip_run_renders(tmp_path: Path) -> None:
    """The issue's check: 20 nodes of a 10^5-node run, read with filters pushed down."""
    gossip = str(Path(__file__).parent.parent / "experiments" / "gossip_quick.toml")
    r = runner.invoke(app, ["run", gossip, "--out", str(tmp_path),
                            "--set", "network.nodes=100000"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "big.html"
    results = tmp_path / "gossip_quick"
    r = runner.invoke(app, ["diagram", str(results), "--nodes", "0-19", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = dg.load_diagram(results, nodes=list(range(20)))
    assert set(data.events["node"]) == set(range(20))
    assert 0 < len(data.events) < 5000 and len(data.incoming) > 0  # a sliver of 6 M rows
    dom = _run_chromium(_chromium(), "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="main-svg"' in dom.stdout and "other nodes" in dom.stdout
    assert f'data-events="{len(rcz.happens_before(data.events))}"' in dom.stdout
