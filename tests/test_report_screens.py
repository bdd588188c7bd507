"""Report screenshots: the reports of the README's own results, drawn by headless Chromium,
with no tick labels on top of each other and no legend that scrolls (hiding entries).

``tests/report_overlaps.js`` runs in the page once the figures are drawn: it measures every
tick label's box on every axis and reports the pairs that overlap, and the legends that
need a scroll bar. The screenshots are kept under pytest's temp directory (and copied to
``$RAYSIM_SCREENSHOTS`` when it is set, to look at them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from raysim.analysis import report

CHECK = (Path(__file__).parent / "report_overlaps.js").read_text(encoding="utf-8")
# results directory -> figures its report draws (at the README test's sizes): chord_path_length
# has a 16-node run, so its report also draws that run's space-time diagram; chord_failures
# also draws routing failure and key loss against p
REPORTS = {"gossip_quick": 3, "chord_path_length": 4, "chord_churn": 5, "chord_failures": 5}


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must install the Debian package 'chromium'")
        pytest.skip("chromium is not installed (Debian package 'chromium')")
    return exe


def render(page: str, out: Path) -> dict:
    """Draw ``page`` in headless Chromium; screenshot to ``out``; what the check found."""
    exe = _chromium()
    html = out.with_suffix(".html")
    html.write_text(page.replace("</body>", f"<script>{CHECK}</script></body>"),
                    encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="raysim-chromium-") as profile:
        r = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--virtual-time-budget=20000", "--window-size=1280,4000",
             f"--screenshot={out}", "--dump-dom", html.as_uri()],
            capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.findall(r'<pre id="raysim-overlaps">(.*?)</pre>', r.stdout, re.S)
    assert found, "the check did not run in the page"
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a blank page is ~10 KB
    if os.environ.get("RAYSIM_SCREENSHOTS"):
        shutil.copy(out, Path(os.environ["RAYSIM_SCREENSHOTS"]) / out.name)
    result: dict = json.loads(found[-1])
    return result


def test_the_check_finds_crowded_ticks_and_scrolling_legends(tmp_path: Path) -> None:
    # What the report used to draw: plotly's minor log-axis labels ("2", "5") between
    # decades, here squeezed into a narrow figure, and a legend taller than its plot.
    fig = go.Figure([go.Scatter(x=[10, 10**5], y=[i, i + 1], name=f"line {i}")
                     for i in range(40)])
    fig.update_layout(width=260, height=260, xaxis={"type": "log", "dtick": "D1"})
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><script>"
            + get_plotlyjs()
            + "</script></head><body>" + fig.to_html(full_html=False, include_plotlyjs=False)
            + "</body></html>")
    got = render(page, tmp_path / "crowded.png")
    assert got["plots"] == 1
    assert got["overlaps"] and got["scrolling_legends"]


@pytest.mark.parametrize(("experiment", "figures"), REPORTS.items())
def test_report_screenshot_has_no_overlapping_labels(
    readme_results: Path, experiment: str, figures: int, tmp_path: Path
) -> None:
    got = render(report.build(readme_results / experiment), tmp_path / f"{experiment}.png")
    assert got["plots"] == figures
    assert got["overlaps"] == [], got["overlaps"]
    assert got["scrolling_legends"] == [], got["scrolling_legends"]
