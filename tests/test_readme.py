"""The README cannot drift: its shell and Python blocks run as written, in order, and the
notebooks run on the results of its commands. How the blocks are read, and the map of
quick sizes, are in ``tests/readme_support.py``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import execute_notebook
from tests.readme_support import (
    CHORD_EXAMPLES,
    FAST,
    FULL_LOGS,
    GOSSIP_EXAMPLES,
    ROOT,
    SWEPT_P_OR_R,
    plan,
)


def test_the_readme_has_runnable_blocks_and_samples() -> None:
    steps = plan()
    cmds = [c for _, cs, _ in steps for c in cs]
    assert len(cmds) >= 20 and sum(1 for _, _, s in steps if s is not None) >= 2
    keys = {c.key for c in cmds}
    stale = sorted(k for k in FAST if k not in keys)
    assert not stale, f"FAST names commands the README no longer has: {stale}"
    for c in cmds:  # the convention: tools by their path in .venv, never bare
        assert c.words[0] in ("make", "source") or c.words[0].startswith(".venv/bin/"), c.text


def test_every_readme_block_runs_as_written(readme_results: Path) -> None:
    # What the blocks left behind is what the README says they leave.
    assert (readme_results / "gossip_quick" / "report.html").is_file()
    assert (readme_results / "gossip_quick" / "convergence.html").is_file()
    assert (readme_results / "chord_failures" / "report.html").is_file()
    assert {p.name for p in readme_results.iterdir()} >= {*GOSSIP_EXAMPLES, *CHORD_EXAMPLES}


@pytest.mark.parametrize(
    ("notebook", "experiment"),
    [("gossip_convergence.ipynb", e) for e in GOSSIP_EXAMPLES]
    + [("chord_lookups.ipynb", e) for e in CHORD_EXAMPLES],
)
def test_notebook_runs_on_every_example_it_supports(
    readme_results: Path,
    notebook: str, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ROOT / "analysis" / notebook
    assert experiment in path.read_text(encoding="utf-8")  # the notebook names it
    text, figures = execute_notebook(path, readme_results / experiment, monkeypatch)
    runs = pd.read_parquet(readme_results / experiment / "runs.parquet")
    if notebook.startswith("gossip"):
        assert f"{len(runs)} runs; swept:" in text and figures == 3
        return
    assert f"{len(runs)} chord runs" in text
    said = "maintenance traffic: not in this log" in text
    assert said == (experiment not in FULL_LOGS)  # said, not drawn as zeros
    # hops vs N, hop distribution and key load always; failures and maintenance if they apply
    expected = 3 + (experiment in SWEPT_P_OR_R) + (experiment in FULL_LOGS)
    assert figures == expected, text
