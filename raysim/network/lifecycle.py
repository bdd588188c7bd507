"""Who is up when: the run's schedule of starts, crashes, recoveries, joins and departures.

The schedule is a pure function of the configuration and the seed, computed identically by
every shard (each keeps its own nodes' rows), so churn is as reproducible as every other
fault. It is produced by one pass over time that keeps the set of nodes up, so that a
Poisson departure picks a node that is up, a join picks one that is not, and every join is
handed a *bootstrap* node that is up at that moment (the node a Chord-style join contacts
first; -1 when nobody is up).

Churn models (see :class:`raysim.network.faults.Churn`): Poisson joins and departures at rate R per
second; per-node alternating session and down-time lengths (exponential, Pareto, Weibull);
a trace of ``time,node,event`` rows. A departure is a graceful ``leave`` or a silent
``fail`` (logged as a crash). Mass failures are crashes with a ``fraction``.
"""

from __future__ import annotations

import csv
import heapq
import os
import stat
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from raysim.log.schema import CRASH, JOIN, LEAVE, RECOVER, START
from raysim.network.faults import MAX_TICKS, Churn, Faults, parse_node_set
from raysim.values.rng import NodeRng, derive, uniform_array


class RunSpec(Protocol):
    """What the schedule depends on (the engine's run description has these fields)."""

    @property
    def seed(self) -> int: ...
    @property
    def n_nodes(self) -> int: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def duration(self) -> int: ...
    @property
    def tick_ms(self) -> float: ...
    @property
    def trace(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None: ...


_CRASH_STREAM = 0xC4A5
_CHURN_STREAM = 0xC8C8
_INITIAL_STREAM = 0x1417

TRACE_EVENTS = {"join": JOIN, "leave": LEAVE, "fail": CRASH}


@dataclass(frozen=True)
class Schedule:
    """Lifecycle events as columns sorted by (time, node, seq); ``arg`` is a join's bootstrap."""

    time: np.ndarray
    node: np.ndarray
    kind: np.ndarray
    seq: np.ndarray
    arg: np.ndarray

    def for_nodes(self, lo: int, hi: int) -> Schedule:
        """The rows of nodes lo..hi-1."""
        m = (self.node >= lo) & (self.node < hi)
        return Schedule(self.time[m], self.node[m], self.kind[m], self.seq[m], self.arg[m])


MAX_TRACE_BYTES = 256 << 20  # a churn trace above 256 MiB is refused before it is read


def read_trace(path: str | Path, n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A churn trace: CSV rows ``time,node,event`` (a header row is allowed); ValueError if bad.

    Only a regular file of at most :data:`MAX_TRACE_BYTES` is read (a device or a FIFO would
    never end), line by line; OSError if it cannot be opened.
    """
    check_trace_file(path)
    # Rows accumulate in typed arrays (8 bytes a value), not in lists of Python ints.
    times, nodes, kinds = array("q"), array("q"), array("q")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.reader(f), start=1):
                _trace_row(path, i, row, n_nodes, times, nodes, kinds)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (expected CSV rows time,node,event)") from None
    except csv.Error as e:
        raise ValueError(f"{path}: not a CSV file ({e})") from None
    return np.array(times, np.int64), np.array(nodes, np.int64), np.array(kinds, np.int64)


def check_trace_file(path: str | Path) -> None:
    """ValueError unless ``path`` is a regular file of at most :data:`MAX_TRACE_BYTES`."""
    st = os.stat(path)  # OSError (no such file, no permission) goes to the caller
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (devices, FIFOs and folders are refused)")
    if st.st_size > MAX_TRACE_BYTES:
        raise ValueError(f"{path}: {st.st_size} bytes; a trace may have at most {MAX_TRACE_BYTES}")


def _trace_row(
    path: str | Path,
    i: int,
    row: list[str],
    n_nodes: int,
    times: array[int],
    nodes: array[int],
    kinds: array[int],
) -> None:
    if not row or row[0].strip().startswith("#") or (i == 1 and row[0].strip() == "time"):
        return
    if len(row) != 3:
        raise ValueError(f"{path}:{i}: expected time,node,event")
    try:
        t, nd = int(row[0]), int(row[1])
    except ValueError:
        raise ValueError(f"{path}:{i}: time and node must be integers") from None
    ev = row[2].strip()
    if ev not in TRACE_EVENTS or not 0 <= t <= MAX_TICKS or not 0 <= nd < n_nodes:
        raise ValueError(
            f"{path}:{i}: need time in 0..{MAX_TICKS}, node in 0..{n_nodes - 1}, "
            f"event one of {', '.join(TRACE_EVENTS)}"
        )
    times.append(t)
    nodes.append(nd)
    kinds.append(TRACE_EVENTS[ev])


def _initially_up(spec: RunSpec) -> np.ndarray:
    n, share = spec.n_nodes, spec.faults.churn.initial
    if spec.faults.churn.model == "none" or share >= 1.0:
        return np.ones(n, dtype=bool)
    ids = np.arange(n, dtype=np.int64)
    order = np.argsort(uniform_array(derive(spec.seed, _INITIAL_STREAM), ids), kind="stable")
    up = np.zeros(n, dtype=bool)
    up[order[: round(share * n)]] = True
    return up


def _static_events(spec: RunSpec, up0: np.ndarray) -> list[tuple[int, int, int]]:
    """(time, node, kind) of crashes, recoveries, session churn and trace churn."""
    n = spec.n_nodes
    out: list[tuple[int, int, int]] = []
    for i, c in enumerate(spec.faults.crashes):
        if c.node is not None:
            who = np.array([c.node], dtype=np.int64)
        elif c.nodes is not None:
            who = np.flatnonzero(parse_node_set(c.nodes, n, f"faults.crashes.{i}.nodes"))
        else:
            assert c.fraction is not None
            ids = np.arange(n, dtype=np.int64)
            h = uniform_array(derive(spec.seed, _CRASH_STREAM, i), ids)
            who = np.sort(np.argsort(h, kind="stable")[: round(c.fraction * n)])
        for at, kind in ((c.at, CRASH), (c.recover_at, RECOVER)):
            if at is not None:
                out.extend((at, int(w), kind) for w in who.tolist())
    churn = spec.faults.churn
    end = min(spec.duration, churn.end if churn.end is not None else spec.duration)
    leave = LEAVE if churn.departure == "leave" else CRASH
    if churn.model == "sessions":
        assert churn.session is not None and churn.downtime is not None
        for node in range(n):
            rng = NodeRng(derive(spec.seed, _CHURN_STREAM, node))
            t, up = churn.start, bool(up0[node])
            while True:
                t += (churn.session if up else churn.downtime).sample(rng.random())
                if t >= end:
                    break
                up = not up
                out.append((t, node, JOIN if up else leave))
    elif churn.model == "trace":
        assert spec.trace is not None
        out.extend(zip(*(a.tolist() for a in spec.trace), strict=True))
    return out


def lifecycle_schedule(spec: RunSpec) -> Schedule:
    """The whole run's lifecycle schedule (every node; shards take their own rows)."""
    churn = spec.faults.churn
    up0 = _initially_up(spec)
    static = _static_events(spec, up0)
    if not static and churn.model != "poisson":
        # NOTE: the common case (no crashes, no churn) is one start row per node that is up,
        # already in (time, node, seq) order: built as arrays, not 10^5 tuples.
        ids = np.flatnonzero(up0).astype(np.int64)
        k = len(ids)
        return Schedule(
            np.zeros(k, dtype=np.int64),
            ids,
            np.full(k, START, dtype=np.int64),
            np.arange(k, dtype=np.int64),
            np.full(k, -1, dtype=np.int64),
        )
    rows: list[tuple[int, int, int, int, int]] = []  # time, node, kind, seq, arg
    seq = 0
    for node in np.flatnonzero(up0).tolist():
        rows.append((0, node, START, seq, -1))
        seq += 1
    queue = [(t, i, node, kind) for i, (t, node, kind) in enumerate(static)]
    heapq.heapify(queue)
    rng = NodeRng(derive(spec.seed, _CHURN_STREAM, -1))
    up = up0.copy()
    members = np.flatnonzero(up0).tolist()  # the nodes up, with their positions
    where = {m: i for i, m in enumerate(members)}
    absent = np.flatnonzero(~up0).tolist()
    absent_at = {m: i for i, m in enumerate(absent)}

    def move(node: int, to_up: bool) -> None:
        src, src_at, dst, dst_at = (
            (absent, absent_at, members, where) if to_up else (members, where, absent, absent_at)
        )
        i = src_at.pop(node)
        last = src.pop()
        if last != node:
            src[i] = last
            src_at[last] = i
        dst_at[node] = len(dst)
        dst.append(node)
        up[node] = to_up

    end = min(spec.duration, churn.end if churn.end is not None else spec.duration)
    per_tick = 2.0 * churn.rate / (1000.0 / spec.tick_ms) if churn.model == "poisson" else 0.0
    next_poisson = None
    if per_tick:
        next_poisson = churn.start + max(1, round(-np.log1p(-rng.random()) / per_tick))
    leave = LEAVE if churn.departure == "leave" else CRASH
    while queue or (next_poisson is not None and next_poisson < end):
        if (
            next_poisson is not None
            and next_poisson < end
            and (not queue or next_poisson < queue[0][0])
        ):
            t = next_poisson
            next_poisson += max(1, round(-np.log1p(-rng.random()) / per_tick))
            joining = rng.random() < 0.5
            pool = absent if joining else members
            if not pool:
                continue
            node = pool[rng.randrange(len(pool))]
            kind = JOIN if joining else leave
        else:
            t, _, node, kind = heapq.heappop(queue)
        arg = -1
        if kind in (JOIN, RECOVER):
            if up[node]:
                continue
            if kind == JOIN and members:
                arg = members[rng.randrange(len(members))]
            move(node, True)
        elif kind in (CRASH, LEAVE):
            if not up[node]:
                continue
            move(node, False)
        rows.append((t, node, kind, seq, arg))
        seq += 1
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return Schedule(empty, empty, empty, empty, empty)
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)]
    order = np.lexsort((cols[3], cols[1], cols[0]))
    return Schedule(*(c[order] for c in cols))


__all__ = ["Churn", "Schedule", "lifecycle_schedule", "read_trace"]
