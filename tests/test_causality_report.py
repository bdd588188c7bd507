"""The causality parts of the report: diagram, classified pairs, violations against jitter."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysim.analysis import causality_report as cr
from raysim.analysis import load_runs, report
from raysim.experiments.config import load
from raysim.experiments.runner import run
from tests.conftest import check_notebook_stored_clean, execute_notebook

EXPERIMENTS = Path(__file__).parent.parent / "experiments"


@pytest.fixture(scope="module")
def broadcast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small causal-broadcast sweep run locally: 2 policies x 3 jitters x 2 seeds."""
    out = tmp_path_factory.mktemp("bcast")
    for policy in ("arrival", "causal"):
        for jitter in (0, 100, 400):
            for seed in (1, 2):
                cfg = load(EXPERIMENTS / "causal_broadcast.toml", [
                    f"protocol.policy={policy}", f"network.jitter={jitter}",
                    "network.nodes=5", "protocol.until=1500", "experiment.duration=4000",
                ], seed=seed)
                assert run(cfg, out).status == "ok"
    return out / "causal_broadcast"


def test_apply_on_arrival_violates_under_jitter_and_causal_delivery_never(broadcast: Path) -> None:
    per_run = cr.causal_violations(broadcast, load_runs(broadcast))
    assert len(per_run) == 12
    arrival = per_run[per_run["protocol.policy"] == "arrival"]
    causal = per_run[per_run["protocol.policy"] == "causal"]
    assert (causal["violations"] == 0).all()
    assert (arrival[arrival["network.jitter"] == 0]["violations"] == 0).all()  # FIFO links
    assert (arrival[arrival["network.jitter"] == 400]["violations"] > 0).all()
    mean = arrival.groupby("network.jitter")["violations"].mean()
    assert mean[400] > mean[100] > 0
    assert (per_run["applied"] > 0).all()
    fig = cr.fig_causal_violations(per_run)
    assert [t.name for t in fig.data] == ["apply on arrival (Algorithm 3)",
                                          "causal delivery (hold back)"]
    assert list(fig.data[1].y) == [0, 0, 0]


def test_broadcast_report_has_the_violations_figure(broadcast: Path) -> None:
    page = report.build(broadcast)
    assert "Causal broadcast: causal-order violations" in page
    assert 'id="fig-causal-violations"' in page
    assert 'id="fig-diagram"' in page  # 5 nodes: the smallest run is drawn


def test_lamport_three_report_shows_diagram_and_classified_pairs(tmp_path: Path) -> None:
    cfg = load(EXPERIMENTS / "lamport_three.toml")
    assert run(cfg, tmp_path).status == "ok"
    page = report.build(tmp_path / "lamport_three")
    assert 'id="fig-diagram"' in page and "plotly_click" in page
    assert "every pair of stamped events satisfies the clock condition" in page
    assert "Every pair of the 15 clocked events, classified" in page
    # Node 0 has six clocked events, node 2 four (local, receive, send, receive).
    assert "<td>P0.6</td>" in page and "<td>P2.4</td>" in page and "<td>P2.5</td>" not in page
    n_pairs = 15 * 14 // 2
    assert page.count("<td>→</td>") + page.count("<td>←</td>") + page.count("<td>∥</td>") == n_pairs


NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "causality.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    check_notebook_stored_clean(NOTEBOOK, "from raysim import analysis")


def test_notebook_runs_on_the_broadcast_results(
    broadcast: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, figures = execute_notebook(NOTEBOOK, broadcast, monkeypatch)
    assert "12 runs; swept: protocol.policy, network.jitter" in text
    assert figures == 1
