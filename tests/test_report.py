"""raysim report: one self-contained HTML file, deterministic, rendered by headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim.analysis import report
from raysim.cli import app
from raysim.experiments import runner, sweep
from tests.sweep_support import (  # noqa: F401  (fixtures)
    GOSSIP,
    averaging_results,
    data,
    tiny_results,
)

FIGURES = ("fig-convergence", "fig-milestones", "fig-messages")


def test_report_is_self_contained_and_deterministic(tiny_results: Path) -> None:  # noqa: F811
    page = report.build(tiny_results)
    assert page == report.build(tiny_results)
    assert not re.search(r"<script[^>]+src=", page), "plotly.js must be inline, not fetched"
    assert "cdn.plot.ly" not in page.split("</head>")[1]
    assert page.count("<script") >= 1 + len(FIGURES) and "Plotly.newPlot" in page
    for fig in FIGURES:
        assert f'id="{fig}"' in page
    assert "Sweep parameters" in page and "faults.loss" in page and "replicates (seeds)" in page
    runs = pd.read_parquet(tiny_results / "runs.parquet")
    assert all(run_id in page for run_id in runs["run_id"])
    assert "Pittel" in page and "Karp" in page


def test_failed_runs_are_listed_with_their_error(tiny_results: Path, tmp_path: Path) -> None:  # noqa: F811
    res = tmp_path / "copy"
    shutil.copytree(tiny_results, res)
    runs = pd.read_parquet(res / "runs.parquet")
    bad = runs.iloc[[0]].assign(run_id="f" * 16, status="failed", error="boom <at> node 3",
                                traceback="Traceback: x < y")
    pd.concat([runs, bad]).to_parquet(res / "runs.parquet", index=False)
    page = report.build(res)
    assert "1 run(s) failed" in page and "boom &lt;at&gt; node 3" in page
    assert "24 of 25 runs ok" in page


def test_cli_report_writes_into_each_experiment_directory(
    tiny_results: Path, tmp_path: Path  # noqa: F811
) -> None:
    shutil.copytree(tiny_results, tmp_path / "tiny")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny" / "report.html").stat().st_size > 1_000_000  # plotly.js inside
    assert not list(tmp_path.glob("tiny/.report.html-*"))


def test_averaging_results_get_the_variance_figure(averaging_results: Path) -> None:  # noqa: F811
    page = report.build(averaging_results)
    assert 'id="fig-variance"' in page and "1/(2√e)" in page
    assert 'id="fig-convergence"' not in page


def test_a_single_raysim_run_directory_also_gets_a_report(tmp_path: Path) -> None:
    cfg = sweep.plan_data(data(GOSSIP, seeds=1, **{"protocol.mode": ["push"]})).runs[0].cfg
    runner.run(cfg, tmp_path)  # as `raysim run` does: no sweep.json, no replicate column
    page = report.build(tmp_path / "tiny")
    assert "1 of 1 runs ok" in page and 'id="fig-convergence"' in page


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must install the Debian package 'chromium'")
        pytest.skip("chromium is not installed (Debian package 'chromium')")
    return exe


def _run_chromium(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="raysim-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}",
               # Any network fetch would fail: the report must render offline.
               "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(tiny_results: Path, tmp_path: Path) -> None:  # noqa: F811
    exe = _chromium()
    shutil.copytree(tiny_results, tmp_path / "tiny")
    (path,) = report.write(tmp_path / "tiny")
    url = Path(path).as_uri()
    dom = _run_chromium(exe, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    positions = sorted((html.index(f'id="{fig}"'), fig) for fig in FIGURES)
    for i, (start, fig) in enumerate(positions):
        end = positions[i + 1][0] if i + 1 < len(positions) else len(html)
        segment = html[start:end]
        assert 'class="main-svg"' in segment, f"{fig} was not drawn"
        assert "scatterlayer" in segment, f"{fig} has no data traces"
    # The convergence figure is first: 2 loss rates × 3 modes = 6 subplots.
    assert positions[0][1] == "fig-convergence"
    conv = html[positions[0][0]:positions[1][0]]
    subplots = set(re.findall(r'class="subplot (x\d*y\d*)"', conv))
    assert subplots == {"xy", "x2y2", "x3y3", "x4y4", "x5y5", "x6y6"}
    shot = tmp_path / "report.png"
    result = _run_chromium(exe, "--window-size=1280,2400", f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page is ~10 KB
