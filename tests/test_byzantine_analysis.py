"""The Byzantine analysis, report sections and notebook, on a handful of small runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysim.analysis import byzantine as rb
from raysim.experiments.config import load
from raysim.experiments.runner import run
from tests.conftest import check_notebook_stored_clean, execute_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis" / "byzantine.ipynb"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("byz-results")
    for n, nodes in ((4, "'0'"), (7, "'0-1'"), (6, "'0-1'"), (9, "'0-2'")):
        cfg = load(ROOT / "experiments" / "bracha.toml",
                   [f"network.nodes={n}", f"faults.byzantine.nodes={nodes}"])
        assert run(cfg, out).status == "ok"
    for nodes, beh in (("[]", "liar"), ("[0]", "liar"), ("[0, 1]", "extreme")):
        cfg = load(ROOT / "experiments" / "byzantine_averaging.toml",
                   ["network.nodes=20", "experiment.duration=8000",
                    f"faults.byzantine.nodes={nodes}", f"faults.byzantine.behaviour={beh}"])
        assert run(cfg, out).status == "ok"
    return out


def test_bracha_runs_separate_tolerated_from_broken(results: Path) -> None:
    per_run = rb.bracha_runs(results / "bracha")
    assert sorted(per_run["n"]) == [4, 6, 7, 9]
    tol = per_run[per_run["tolerated"]]
    assert sorted(tol["n"]) == [4, 7] and (tol["violations"] == 0).all()
    assert (per_run[~per_run["tolerated"]]["agreement"] > 0).all()
    summary = rb.bracha_summary(per_run)
    assert list(summary["runs_violated"]) == [0, 1, 0, 1]  # n = 4, 6, 7, 9
    parts = rb.bracha(results / "bracha", rb.load_runs(results / "bracha"))
    assert [p.figure_id for p in parts][:2] == ["fig-bracha-agreement", "fig-bracha-messages"]


def test_a_liar_moves_the_honest_estimate(results: Path) -> None:
    err = rb.averaging_error(results / "byzantine_averaging").sort_values("liars")
    assert list(err["liars"]) == [0, 1, 2]
    assert err["error"].iloc[0] < 0.05 < err["error"].iloc[1] < err["error"].iloc[2]
    parts = rb.averaging(results / "byzantine_averaging",
                         rb.load_runs(results / "byzantine_averaging"))
    assert "fig-byzantine-averaging" in [p.figure_id for p in parts]


def test_notebook_is_stored_clean_and_runs(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_notebook_stored_clean(NOTEBOOK, "from raysim.analysis import byzantine")
    text, figures = execute_notebook(NOTEBOOK, results, monkeypatch)
    assert "3 averaging runs" in text
    assert "2 runs at k <= f: 0 violated; 2 runs at k = n/3: 2 violated" in text
    assert figures == 3


def test_malicious_chord_nodes_make_lookups_fail(tmp_path: Path) -> None:
    for beh, share in (("wrong", 0.1), ("drop", 0.1), ("wrong", 0.3)):
        cfg = load(ROOT / "experiments" / "chord_byzantine.toml",
                   ["network.nodes=64", "experiment.duration=15000",
                    f"faults.byzantine.behaviour={beh}", f"faults.byzantine.fraction={share}"])
        assert run(cfg, tmp_path).status == "ok"
    s = rb.chord_summary(tmp_path / "chord_byzantine").set_index(["behaviour", "share"])
    assert s.loc[("wrong", 0.1), "wrong"] > 0.2  # lookups end at the liar that claims the key
    assert s.loc[("wrong", 0.3), "wrong"] > s.loc[("wrong", 0.1), "wrong"]
    assert s.loc[("drop", 0.1), "wrong"] < s.loc[("wrong", 0.1), "wrong"]  # routed around
    assert s.loc[("drop", 0.1), "failed"] > 0
    parts = rb.chord(tmp_path / "chord_byzantine", rb.load_runs(tmp_path / "chord_byzantine"))
    assert "fig-byzantine-chord" in [p.figure_id for p in parts]
