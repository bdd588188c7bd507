"""Run faulty experiments with protocols that declare several milestones (a subprocess helper).

``python tests/hashseed_run.py OUT`` writes two runs (per-node and columnar gossip, each
with four milestone names) into ``OUT``; ``test_hashseed`` runs it under several
``PYTHONHASHSEED`` values and compares every file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from raysim.api.protocol import register
from raysim.experiments.config import validate
from raysim.experiments.runner import run
from raysim.protocols.gossip.dissemination import Gossip, GossipColumns

NAMES = ("informed", "zeta", "alpha", "mid")


@register("test.milestones")
class ManyMilestones(Gossip):
    """Per-node gossip declaring milestones it never reaches (columns are still written)."""

    milestones: ClassVar[tuple[str, ...]] = NAMES


@register("test.milestones_columns")
class ManyMilestonesColumns(GossipColumns):
    """Columnar gossip declaring milestones it never reaches."""

    milestones: ClassVar[tuple[str, ...]] = NAMES


FAULTS = {
    "loss": 0.1,
    "duplicate": 0.1,
    "corrupt": 0.05,
    "partitions": [{"start": 200, "end": 900, "a": "0-20"}],
    "crashes": [{"nodes": "3-5", "at": 300, "recover_at": 800}],
    "churn": {"model": "poisson", "rate": 2.0, "initial": 0.9},
}


def main(out: Path) -> None:
    """Write both runs into ``out``."""
    for protocol in ("test.milestones", "test.milestones_columns"):
        cfg = validate(
            {
                "experiment": {"name": "hs", "protocol": protocol, "seed": 5, "duration": 3000},
                "protocol": {"period": 100},
                "network": {"nodes": 60, "delay": {"dist": "uniform", "low": 5, "high": 40},
                            "jitter": 3},
                "faults": FAULTS,
            },
            "hashseed",
        )
        res = run(cfg, out)
        assert res.status == "ok", res.error


if __name__ == "__main__":
    main(Path(sys.argv[1]))
