"""Bracha's reliable broadcast: the thresholds, the checks, and what n/3 Byzantine nodes break."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raysim.experiments.config import validate
from raysim.experiments.runner import run
from raysim.protocols.byzantine.bracha import (
    Bracha,
    BrachaParams,
    Echo,
    Initial,
    Ready,
    thresholds,
)
from raysim.testing import FakeContext


def test_thresholds_follow_bracha() -> None:
    assert thresholds(4, 1) == (3, 2, 3)
    assert thresholds(7, 2) == (5, 3, 5)


def test_a_node_echoes_once_readies_on_a_quorum_and_delivers_on_2f_plus_1() -> None:
    ctx = FakeContext(node=1, n_nodes=4)
    node = Bracha(BrachaParams(), 1)
    node.on_start(ctx)
    node.on_message(ctx, 0, Initial(7))
    node.on_message(ctx, 0, Initial(8))  # a second initial is ignored
    assert [s.msg for s in ctx.sent] == [Echo(7)] * 4
    for src in (0, 1, 2):
        node.on_message(ctx, src, Echo(7))
    assert [s.msg for s in ctx.sent[4:]] == [Ready(7)] * 4
    for src in (0, 2):
        node.on_message(ctx, src, Ready(7))
    assert not ctx.observations
    node.on_message(ctx, 3, Ready(7))
    assert [(o.name, o.value) for o in ctx.observations] == [("deliver", 7)]


def test_f_plus_1_readies_make_a_node_ready_without_echoes() -> None:
    ctx = FakeContext(node=2, n_nodes=4)
    node = Bracha(BrachaParams(), 2)
    node.on_start(ctx)
    node.on_message(ctx, 0, Ready(5))
    assert not ctx.sent
    node.on_message(ctx, 1, Ready(5))
    assert [s.msg for s in ctx.sent] == [Ready(5)] * 4


def _run(
    tmp_path: Path, n: int, nodes: str, seed: int = 1, behaviour: str = "equivocate"
) -> dict:
    cfg = validate(
        {
            "experiment": {"name": "b", "protocol": "byzantine.bracha", "seed": seed,
                           "duration": 2000},
            "network": {"nodes": n, "delay": {"dist": "uniform", "low": 5, "high": 100}},
            "faults": {"byzantine": {"nodes": nodes, "behaviour": behaviour}},
        },
        "t",
    )
    res = run(cfg, tmp_path / f"{n}-{nodes}-{seed}-{behaviour}")
    assert res.status == "ok", res.error
    return res.row


@pytest.mark.parametrize(("n", "nodes", "k"), [(4, "0", 1), (7, "0-1", 2), (10, "0-2", 3)])
def test_agreement_validity_totality_hold_below_n_over_3(
    tmp_path: Path, n: int, nodes: str, k: int
) -> None:
    for seed in range(3):
        row = _run(tmp_path, n, nodes, seed)
        assert row["metric.violations"] == 0, row["violations"]
        assert row["deliver_nodes"] == n - k  # every honest node delivered


def test_honest_sender_with_silent_relays_is_delivered_everywhere(tmp_path: Path) -> None:
    row = _run(tmp_path, 7, "1-2", behaviour="silent")
    assert row["metric.violations"] == 0
    assert row["deliver_nodes"] == 5  # every honest node delivered the sender's value


@pytest.mark.parametrize(("n", "nodes"), [(6, "0-1"), (9, "0-2")])
def test_agreement_breaks_at_n_over_3_and_the_checker_names_the_nodes(
    tmp_path: Path, n: int, nodes: str
) -> None:
    row = _run(tmp_path, n, nodes)
    assert row["metric.violations.agreement"] >= 1
    assert "honest nodes" in row["violations"] and "delivered 1 and 2" in row["violations"]


def test_messages_per_broadcast_grow_as_2n2_plus_n(tmp_path: Path) -> None:
    sent = [_run(tmp_path, n, "0", behaviour="silent")["metric.messages_per_broadcast"]
            for n in (4, 8)]
    # a silent sender still sends its initial message; the others echo and ready to all
    assert sent == [n + 2 * (n - 1) * n for n in (4, 8)]
    assert np.diff(sent)[0] > 0
