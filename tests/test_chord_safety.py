"""Chord's safety check (``stable_lookup_owner``) runs on every run with a full log: zero on a
correct ring, caught when a deliberately broken variant ends lookups at the wrong node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysim.api.protocol import Context
from raysim.experiments import runner
from raysim.experiments.config import ExperimentConfig, validate
from raysim.protocols.chord.lookup import PendingLookup
from raysim.protocols.chord.protocol import Chord

HERE = "tests.test_chord_safety"


class WrongEnd(Chord):
    """Broken on purpose: a finished user lookup names the owner's successor node instead."""

    def _finish(self, ctx: Context, lk: PendingLookup, end: int) -> None:
        super()._finish(ctx, lk, (end + 1) % ctx.n_nodes if end >= 0 else end)


def _chord(protocol: str, level: str = "all") -> ExperimentConfig:
    return validate({
        "experiment": {"name": "t", "protocol": protocol, "seed": 2, "duration": 40_000},
        "protocol": {"lookup_rate": 0.5, "settle": 5_000},
        "network": {"nodes": 32, "delay": {"dist": "uniform", "low": 20, "high": 100}},
        "log": {"level": level},
    }, "test")


@pytest.mark.parametrize("level", ["all", "observations"])
@pytest.mark.parametrize(("protocol", "broken"), [("chord", False), (f"{HERE}:WrongEnd", True)])
def test_stable_lookups_end_at_the_owner(
    tmp_path: Path, protocol: str, broken: bool, level: str
) -> None:
    """The check reads observation and lifecycle rows only, so it also runs (and catches the
    broken variant) on an observation-only log."""
    res = runner.run(_chord(protocol, level), tmp_path)
    assert res.status == "ok"
    count = res.row["metric.violations.stable_lookup_owner"]
    if broken:
        assert count > 0 and res.row["metric.violations"] == count
        first = json.loads(res.row["violations"])[0]
        assert first["check"] == "stable_lookup_owner" and "owner is" in first["detail"]
    else:
        assert count == 0 and res.row["metric.violations"] == 0
