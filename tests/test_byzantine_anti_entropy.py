"""Anti-entropy with an equivocating replica: what it breaks, in the checks and the report."""

from __future__ import annotations

from pathlib import Path

from raysim.analysis import byzantine as rb
from raysim.experiments.config import load
from raysim.experiments.runner import run
from raysim.protocols.replication import anti_entropy as ae
from raysim.protocols.replication.adversaries import Equivocator
from tests.replication_fake import FakeNet

ROOT = Path(__file__).resolve().parents[1]


def _checks(mode: str, equivocator: bool) -> tuple[set[str], float]:
    p = ae.AntiEntropyParams(crdt="g_set", mode=mode, period=500, write_rate=8.0,
                             write_until=5000)
    first = Equivocator(p, 0) if equivocator else ae.AntiEntropy(p, 0)
    net = FakeNet([first] + [ae.AntiEntropy(p, i) for i in range(1, 8)], seed=1)
    net.start()
    net.run(20_000)
    found = {v.check for v in ae.AntiEntropy.safety(p, net.events())}
    return found, ae.convergence_metrics(p, net.events(), 8)["converged"]


def test_digests_diverge_and_full_states_accept_the_forgery() -> None:
    assert _checks("digest", False) == (set(), 1.0)
    assert _checks("push_pull", False) == (set(), 1.0)
    found, converged = _checks("digest", True)
    assert "diverged_after_quiescence" in found and converged == 0.0
    # full states: the honest replicas agree, on a set holding an element nobody wrote
    assert _checks("push_pull", True) == ({"wrong_value"}, 1.0)


def test_experiment_runs_and_the_report_shows_the_equivocators(tmp_path: Path) -> None:
    for nodes in ("[]", "[1]"):
        cfg = load(ROOT / "experiments" / "byzantine_anti_entropy.toml",
                   ["network.nodes=8", "experiment.duration=12000", "protocol.write_until=4000",
                    "protocol.mode=digest", f"faults.byzantine.nodes={nodes}"])
        assert run(cfg, tmp_path).status == "ok"
    where = tmp_path / "byzantine_anti_entropy"
    summary = rb.anti_entropy_summary(where).set_index("equivocators")
    assert summary.loc[0, "share_diverged_after_quiescence"] == 0.0
    assert summary.loc[1, "share_diverged_after_quiescence"] == 1.0
    parts = rb.anti_entropy(where, rb.load_runs(where))
    assert "fig-byzantine-anti-entropy" in [p.figure_id for p in parts]
