"""Helpers for the consensus and detection tests: a recording context, log columns of a run."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raysim.values.rng import NodeRng


class Ctx:
    """A per-node context that records sends, timers and observations (no engine)."""

    def __init__(self, node: int, n_nodes: int, now: int = 0) -> None:
        self.node, self.n_nodes, self.now = node, n_nodes, now
        self.sent: list[tuple[int, Any]] = []
        self.timers: dict[int, tuple[int, Hashable]] = {}
        self.emitted: list[tuple[str, Any, int, int]] = []
        self.rng = NodeRng(node + 1)
        self.storage: dict[str, Any] = {}
        self._tid = 0

    def send(self, dst: int, msg: object) -> int:
        self.sent.append((dst, msg))
        return len(self.sent)

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        assert delay >= 0
        self._tid += 1
        self.timers[self._tid] = (self.now + delay, tag)
        return self._tid

    def cancel_timer(self, timer_id: int) -> None:
        self.timers.pop(timer_id, None)

    def emit(self, name: str, value: Any = 1.0, peer: int = -1, ref: int = -1) -> None:
        self.emitted.append((name, value, peer, ref))

    @property
    def peers(self) -> Sequence[int]:
        return [p for p in range(self.n_nodes) if p != self.node]

    def random_peer(self) -> int:
        return self.rng.choice(self.peers)

    def take(self) -> list[tuple[int, Any]]:
        out, self.sent = self.sent, []
        return out

    def names(self) -> list[str]:
        return [e[0] for e in self.emitted]

    def pending(self, tag: Hashable) -> list[int]:
        """Firing times of the live timers with ``tag``."""
        return sorted(t for t, g in self.timers.values() if g == tag)


def columns(events_dir: Path) -> dict[str, np.ndarray]:
    """A run's event log as the checkers read it: numpy columns, strings as objects."""
    df = pd.read_parquet(events_dir)
    out = {c: df[c].to_numpy() for c in df.columns if c != "run_id"}
    for c in ("kind", "msg_type", "name"):
        out[c] = df[c].astype(object).to_numpy()
    return out
