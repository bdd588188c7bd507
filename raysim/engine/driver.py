"""The one interface between the window loop and an execution path, and what a window did.

A :class:`Shard` (:mod:`raysim.engine.shard`) owns the ordering core: pending events, the
window's total order (:mod:`raysim.engine.order`), the log, milestones and the stop rule. A
*driver* owns the nodes: their protocol state, who is up, epochs, counters, random streams
and the context handlers act through. Two drivers implement :class:`Driver`:
:class:`~raysim.engine.pernode.PerNodeDriver` (one Python call per event, for
:class:`~raysim.api.protocol.Protocol`) and :class:`~raysim.engine.columnar.ColumnarDriver`
(batches of events, for :class:`~raysim.api.protocol.BatchProtocol`). Each hands back a
:class:`Record` of the window in the same columns, which the shard logs and counts in one
place; that both paths write the same log for twin protocols is tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from raysim.engine.order import Window
from raysim.log.eventlog import ObsValues
from raysim.network.router import Messages


@dataclass
class Obs:
    """Observation rows: ``names`` is one name for every row, or one per row."""

    time: np.ndarray
    node: np.ndarray
    names: str | list[str]
    values: ObsValues
    peer: np.ndarray
    ref: np.ndarray
    seq: np.ndarray


@dataclass
class Record:
    """What a driver did with a window, as columns (the shard logs and counts these).

    ``msg_seq``: the seq each arrival took at its receiver (by position in
    ``Window.msgs``); ``crashed``: positions of arrivals whose receiver was down; ``fired``:
    the timers that fired (time, node, id, tags, seq), in-window ones included; ``life``:
    the lifecycle events that took effect, as (time, kind, node, arg, seq) chunks;
    ``obs``: the observations that survived the window (those of a crashing node's
    ``on_crash`` are discarded).
    """

    msg_seq: np.ndarray
    crashed: np.ndarray
    fired: tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], np.ndarray]
    life: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list
    )
    obs: list[Obs] = field(default_factory=list)


class Driver(Protocol):
    """An execution path: handles a window's events for a shard's nodes."""

    def run(self, window: Window) -> Record:
        """Handle every event of ``window`` in its order (and the timers set inside it)."""
        ...

    def take_sends(self) -> Messages | None:
        """The window's raw sends (with ``seq`` and ``cause``), or None."""
        ...

    def take_timers(self) -> tuple[tuple[np.ndarray, ...], list[Any]] | None:
        """Timers set for later windows: (time, node, id, epoch) columns and tags, or None."""
        ...

    def inbox_types(self, batch: Messages) -> np.ndarray:
        """The type column the driver wants in its inbox for an arriving ``batch``."""
        ...

    def log_types(self, codes: np.ndarray) -> np.ndarray:
        """The log's ``msg_type`` string codes of an inbox type column."""
        ...

    def alive_of(self, li: np.ndarray) -> np.ndarray:
        """Whether each local node ``li`` is up now."""
        ...

    def alive_count(self) -> int:
        """How many local nodes are up."""
        ...
