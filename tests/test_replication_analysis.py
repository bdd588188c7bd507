"""The replication family's experiment files run as sweeps; report blocks and the notebook."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysim.analysis import load_runs
from raysim.analysis import replication as rr
from raysim.analysis.report import build
from raysim.experiments import sweep
from raysim.experiments.sweep_exec import run_sweep
from tests.conftest import check_notebook_stored_clean, execute_notebook

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
NOTEBOOK = ROOT / "analysis" / "replication.ipynb"

NARROW = {
    "retry_ack": ["sweep.seeds=2", "sweep.faults.loss=[0.1, 0.5]", "protocol.timeout=fixed",
                  "protocol.jitter=0.0", "protocol.ack=each", "protocol.messages=20"],
    "anti_entropy": ["sweep.seeds=2", 'sweep.protocol.crdt=["or_set", "arrival_register"]',
                     "protocol.mode=push_pull"],
    "rumor": ["sweep.seeds=2", "network.nodes=300", "sweep.protocol.k=[1, 2]",
              'sweep.experiment.protocol=["gossip.rumor", "gossip.rumor.backstop"]'],
}
LOG = {
    "experiment": {"name": "log_rebuild", "protocol": "replication.log_rebuild", "seed": 1,
                   "duration": 20_000},
    "protocol": {"interval": 100},
    "network": {"nodes": 5, "delay": {"dist": "uniform", "low": 50, "high": 150}},
    "faults": {"loss": 0.05},
    "log": {"level": "observations"},
    "sweep": {
        "seeds": 1,
        "protocol.flush": [1, 8],
        "faults.crashes": [
            [{"nodes": [1 + j % 4], "at": 2000 + 3000 * j, "recover_at": 2500 + 3000 * j}
             for j in range(5)],
            [{"nodes": [1 + j % 4], "at": 2000 + 3000 * j, "recover_at": 4000 + 3000 * j}
             for j in range(5)],
        ],
    },
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> Path:
    out = tmp_path_factory.mktemp("replication")
    for name, overrides in NARROW.items():
        summary = run_sweep(sweep.plan(EXP / f"{name}.toml", overrides), out, progress=False)
        assert not summary.failed
    summary = run_sweep(sweep.plan_data(LOG, (), "test"), out, progress=False)
    assert not summary.failed
    return out


def test_every_experiment_file_plans_at_least_ten_seeds() -> None:
    for name in ("retry_ack", "retry_ack_timeout", "anti_entropy", "anti_entropy_partition",
                 "rumor", "log_rebuild"):
        p = sweep.plan(EXP / f"{name}.toml")
        assert len({r.point.replicate for r in p.runs}) >= 10, name


def test_report_blocks_show_the_results(results: Path) -> None:
    retry = rr.log_metrics(results / "retry_ack")
    assert (retry["delivered_ratio"] == 1.0).all() and (retry["applied_twice"] == 0).all()
    ae = rr.log_metrics(results / "anti_entropy")
    by = ae.set_index(["protocol.crdt", "seed"])
    assert (by.loc["or_set", "converged"] == 1.0).all()
    assert (by.loc["arrival_register", "violations"] > 0).all()
    rumor = rr.log_metrics(results / "rumor")
    assert (rumor[rumor["protocol.anti_entropy"] > 0]["residue"] == 0).all()
    log = rr.log_metrics(results / "log_rebuild", kinds=("obs", "crash", "recover"))
    assert (log[log["protocol.flush"] == 1]["entries_lost"] == 0).all()
    assert (log["prefix_agreement"] == 1.0).all() and (log["recoveries"] == 5).all()
    titles = {name: [p.title for p in rr.report_parts(results / name,
                                                       load_runs(results / name))]
              for name in ("retry_ack", "anti_entropy", "rumor", "log_rebuild")}
    assert "Transmissions per message (each acks)" in titles["retry_ack"]
    assert "Distinct states" in titles["anti_entropy"]
    assert "Residue against k" in titles["rumor"]
    assert "Entries lost per run" in titles["log_rebuild"]
    assert "<h1>raysim report: rumor</h1>" in build(results / "rumor")


def test_notebook_is_stored_clean_and_runs(results: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    check_notebook_stored_clean(NOTEBOOK, "from raysim.analysis import replication")
    text, figures = execute_notebook(NOTEBOOK, results, monkeypatch)
    assert "results: anti_entropy, log_rebuild, retry_ack, rumor" in text
    assert figures >= 8
