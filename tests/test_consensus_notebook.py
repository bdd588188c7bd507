"""The consensus notebook is stored clean and runs on a few small runs of each experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raysim.experiments.config import validate
from raysim.experiments.runner import run
from tests.conftest import check_notebook_stored_clean, execute_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "consensus.ipynb"


def _run(out: Path, name: str, proto: str, nodes: int, duration: int, **sections: Any) -> None:
    data: dict[str, Any] = {
        "experiment": {"name": name, "protocol": proto, "seed": 1, "duration": duration},
        "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 10, "high": 30}},
        "log": {"level": "all"},
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    assert run(validate(data, "test"), out).status == "ok"


@pytest.fixture(scope="module")
def small_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("consensus")
    crash = {"crashes": [{"node": 0, "at": 1000}]}
    for hi in (200, 300):
        _run(out, "raft_election", "consensus.raft", 5, 2500, faults=crash,
             protocol={"clients": 2, "first_leader": 0, "election_max": hi, "client_start": 200})
    _run(out, "naive_leader", "consensus.naive_leader", 4, 2500,
         faults={"partitions": [{"a": "0", "start": 1000, "end": 2000}]})
    for period in (200, 400):
        _run(out, "failure_detectors_swim", "detection.swim", 6, 5000,
             faults={"crashes": [{"node": 2, "at": 2000}]}, protocol={"period": period})
    for w in (1, 3):
        _run(out, "quorum_register", "consensus.quorum_register", 5, 2000,
             protocol={"clients": 2, "w": w, "r": w})
    return out


def test_notebook_is_stored_without_outputs() -> None:
    check_notebook_stored_clean(NOTEBOOK, "from raysim.analysis import consensus as rc")


def test_notebook_runs_on_small_results(small_results: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    text, figures = execute_notebook(NOTEBOOK, small_results, monkeypatch)
    assert "2 Raft runs; violations per check:" in text
    assert "raft_fig16: no results" in text
    assert "with_two_leaders" in text
    assert figures == 4


def test_report_sections_render(small_results: Path) -> None:
    from raysim.analysis import consensus as rc
    from raysim.analysis import detection as rd
    from raysim.analysis import quorum as rq
    from raysim.analysis.load import load_runs

    def titles(parts: list) -> list[str]:
        return [p.title for p in parts]

    raft = rc.raft_section(small_results / "raft_election",
                           load_runs(small_results / "raft_election"))
    assert "Raft: safety on every run" in titles(raft)
    assert "fig-raft-election-cdf" in [p.figure_id for p in raft]
    safety = raft[0].table.set_index("check")
    assert safety.loc["election_safety", "violations"] == 0
    naive = rc.naive_section(small_results / "naive_leader",
                             load_runs(small_results / "naive_leader"))
    assert titles(naive) == ["Naive leader election: two leaders at once",
                             "Naive leader election: first violations"]
    first = naive[1].table.iloc[0]
    assert first["check"] == "single_leader" and 1000 <= first["time"] < 2000
    swim = rd.section(small_results / "failure_detectors_swim",
                      load_runs(small_results / "failure_detectors_swim"))
    assert swim[0].figure is not None and swim[0].figure_id == "fig-detect-tradeoff"
    quorum = rq.section(small_results / "quorum_register",
                        load_runs(small_results / "quorum_register"))
    assert [p.figure_id for p in quorum] == ["fig-quorum-stale", "fig-quorum-latency"]
    assert rc.raft_section(small_results / "naive_leader",
                           load_runs(small_results / "naive_leader")) == []


def test_raysim_report_shows_the_protocol_sections(small_results: Path) -> None:
    from raysim.analysis import report

    page = report.build(small_results / "naive_leader")
    assert "Naive leader election: two leaders at once" in page
    page = report.build(small_results / "raft_election")
    assert "Raft: safety on every run" in page and "Raft: time to elect a new leader" in page
