"""Safety checks and metrics over a run's event log, shared by the replication family.

A check is a plain function of the protocol's parameters and the log's columns (a
``Mapping[str, np.ndarray]``: ``time``, ``kind``, ``node``, ``peer``, ``msg_id``, ``name``,
``value``, as in :mod:`raysim.log.schema`; ``kind`` and ``name`` as strings) that returns
the :class:`Violation` rows it finds, in log order. The protocols list their checks in
``checks`` and run them from ``safety(params, events)``; the same columns give the
protocols' log metrics (``log_metrics``), so a unit test can build a few rows by hand.

Nothing here imports pandas, pyarrow or the engine: the columns are numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from raysim.api.protocol import Violation

Events = Mapping[str, np.ndarray]


def violation(check: str, time: int, node: int, detail: str, peer: int = -1) -> Violation:
    """A :class:`~raysim.api.protocol.Violation` at ``node`` (and ``peer``, if any)."""
    nodes = (int(node),) if peer < 0 else (int(node), int(peer))
    return Violation(check, int(time), nodes, detail)


class Obs(NamedTuple):
    """The ``obs`` rows of one observation name, as columns in log order."""

    time: np.ndarray
    node: np.ndarray
    peer: np.ndarray
    ref: np.ndarray
    value: np.ndarray


def _col(events: Events, name: str, n: int, fill: float | str) -> np.ndarray:
    if name in events:
        return np.asarray(events[name])
    return np.full(n, fill)


def n_rows(events: Events) -> int:
    """How many rows the columns hold."""
    return len(np.asarray(events["time"]))


def obs(events: Events, name: str) -> Obs:
    """The observations called ``name`` (rows of kind ``obs``), in log order."""
    n = n_rows(events)
    kind = np.asarray(events["kind"]).astype(str)
    names = _col(events, "name", n, "").astype(str)
    m = (kind == "obs") & (names == name)
    return Obs(
        np.asarray(events["time"], dtype=np.int64)[m],
        np.asarray(events["node"], dtype=np.int64)[m],
        _col(events, "peer", n, -1).astype(np.int64)[m],
        _col(events, "msg_id", n, -1).astype(np.int64)[m],
        _col(events, "value", n, np.nan).astype(np.float64)[m],
    )


def rows_of_kind(events: Events, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Time and node of every row of ``kind`` (``crash``, ``recover``, …), in log order."""
    k = np.asarray(events["kind"]).astype(str) == kind
    return (
        np.asarray(events["time"], dtype=np.int64)[k],
        np.asarray(events["node"], dtype=np.int64)[k],
    )


def columns(**cols: list[object]) -> dict[str, np.ndarray]:
    """Hand-made log columns for tests and examples (missing columns take their defaults)."""
    out = {k: np.asarray(v) for k, v in cols.items()}
    n = len(out["time"])
    for name, fill in (("peer", -1), ("msg_id", -1), ("name", ""), ("value", np.nan)):
        out.setdefault(name, np.full(n, fill))
    return out


def first_few(violations: list[Violation], k: int = 5) -> list[Violation]:
    """The first ``k`` violations by time (then nodes), for a report."""
    return sorted(violations, key=lambda v: (v.time, v.nodes))[:k]
