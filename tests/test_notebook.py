"""The analysis notebook is stored without outputs and runs on a small sweep's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import check_notebook_stored_clean, execute_notebook
from tests.sweep_support import tiny_results  # noqa: F401  (fixture)

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "gossip_convergence.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    check_notebook_stored_clean(NOTEBOOK, "from raysim import analysis")


def test_notebook_runs_on_a_small_sweep(
    tiny_results: Path,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text, figures = execute_notebook(NOTEBOOK, tiny_results, monkeypatch)
    assert "24 runs; swept:" in text
    assert figures == 3
