"""What the engine is told about a run, and what a shard tells the coordinator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from raysim.network.faults import Faults
from raysim.network.router import Messages

NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class RunSpec:
    """Everything a shard needs to know about the run (small, picklable)."""

    run_id: str
    seed: int
    n_nodes: int
    protocol: str
    params: dict[str, Any]
    topology: str
    degree: int
    delay: Any
    jitter: int
    faults: Faults
    duration: int
    stop_when: str | None
    log_level: str
    batch_rows: int
    tick_ms: float = 1.0
    trace: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # churn trace columns
    causality: str = "none"  # [log] causality: "none", "lamport" or "vector"

    @property
    def lookahead(self) -> int:
        """The window length: the smallest delay any message can have."""
        return max(1, int(self.delay.lower_bound))


@dataclass
class StepInfo:
    """What the coordinator learns from a shard after a window."""

    next_time: int  # earliest pending local event (NEVER if none)
    out_min_time: list[int]  # per destination shard, the earliest delivery sent there
    done: bool  # every live local node has emitted the stop observation
    stopped: bool = False  # the stop rule held after the previous window: nothing was done
    events: int = 0  # deliveries and timers handled so far (for progress display only)


# What a shard hands to a destination shard after a window: whether the sender had met the
# stop rule, and the deliveries (a batch, a router's list of batches, or None).
Inbound = tuple[bool, "Messages | list[Messages] | None"]
