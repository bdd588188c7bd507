"""Safety checks at the end of a run: the event log in, counts of violations out.

A protocol declares ``checks`` (names) and ``safety(params, events)`` (see
:class:`raysim.api.protocol.Contract`). After every run whose protocol declares checks and
whose log is complete (``log.level = "all"``), the runner reads the run's event files with
pyarrow, hands the protocol every column as a numpy array in canonical order (time, node,
then ``seq`` where the log has it, then the remaining canonical columns, so the order is
total), and counts what ``safety`` yields:

- ``metric.violations`` (all checks) and ``metric.violations.<check>`` (each declared
  check, 0 when it held) in the run row;
- ``violations``: the first :data:`KEEP` violations as JSON text (check, time, nodes,
  detail), which ``raysim report`` lists.

A protocol whose checks read only observation and lifecycle rows says so with
``log_needs = "observations"``; its checks then run on observation-only logs too. When the
log does not hold what the checks read (``"none"``, or ``"observations"`` for a protocol
that needs ``"all"``) they are *not run*: the counts are NaN ("not checked"), never 0, and
``--strict`` refuses such a run up front. The protocol's :meth:`log_metrics` (numbers that
need the log) run under the same condition and become ``metric.<name>`` columns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raysim.api.protocol import Contract, ProtocolSpec, Violation
from raysim.log.schema import CANONICAL_SORT, EVENT_SCHEMA

KEEP = 10  # violations kept in the run row for the report


@dataclass
class SafetyResult:
    """What the checks found: counts per check, the first violations, or not checked."""

    checked: bool
    counts: dict[str, int] = field(default_factory=dict)
    first: list[Violation] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # the protocol's log_metrics

    @property
    def total(self) -> int:
        """Violations over all checks."""
        return sum(self.counts.values())

    def row(self, checks: Iterable[str]) -> dict[str, Any]:
        """The run-row columns: ``metric.violations[.<check>]`` and ``violations``."""
        names = list(checks)
        if not names:
            return {}
        if not self.checked:
            nan = math.nan
            return {"metric.violations": nan, **{f"metric.violations.{c}": nan for c in names},
                    "violations": None}
        return {
            "metric.violations": float(self.total),
            **{f"metric.violations.{c}": float(self.counts.get(c, 0)) for c in names},
            "violations": json.dumps([_as_dict(v) for v in self.first]),
        }

    def describe(self) -> str:
        """One line: how many violations of which checks, and the first one."""
        parts = ", ".join(f"{c} {n}" for c, n in self.counts.items() if n)
        head = f"{self.total} safety violation(s) ({parts})"
        if self.first:
            v = self.first[0]
            head += f"; first: {v.check} at time {v.time}, nodes {list(v.nodes)}: {v.detail}"
        return head


def _as_dict(v: Violation) -> dict[str, Any]:
    return {"check": v.check, "time": int(v.time), "nodes": [int(n) for n in v.nodes],
            "detail": v.detail}


def load_events(
    events_dir: Path, columns: Iterable[str] | None = None, kinds: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Every column of a run's event log (or ``columns`` and the canonical sort keys) as
    numpy arrays, rows in canonical order; only the rows whose ``kind`` is in ``kinds``
    if given.

    Strings (dictionary columns) become object arrays with None for null; list columns
    (vectors) become object arrays of lists. The engine's ``lamport`` column is there when
    the run tracked causality; its ``vclock`` column is not read.
    """
    # NOTE: the part files read one by one (in path order, as a dataset would find them):
    # pyarrow.dataset costs ~0.1 s to import, and a run's log is one folder of parts.
    # The engine's vector clocks (n entries on every row) are left out: no check needs
    # them, and they would cost more than the rest of the log together.
    parts = sorted(
        p for p in Path(events_dir).rglob("*.parquet")
        if not any(s.startswith((".", "_")) for s in p.relative_to(events_dir).parts)
    )
    wanted = None if columns is None else {*columns, *CANONICAL_SORT}
    keep = None if kinds is None else pa.array(sorted(kinds), pa.string())
    tables = []
    for part in parts:
        f = pq.ParquetFile(part)
        t = f.read(columns=[
            c for c in f.schema_arrow.names
            if c not in ("run_id", "vclock") and (wanted is None or c in wanted)
        ])
        tables.append(t if keep is None else t.filter(pc.is_in(t["kind"], value_set=keep)))
    table = pa.concat_tables(tables, promote_options="default") if tables else \
        EVENT_SCHEMA.empty_table()
    table = table.drop([c for c in ("run_id", "vclock") if c in table.column_names])
    names = table.column_names
    keys = ["time", "node", *(["seq"] if "seq" in names else [])]
    keys += [c for c in CANONICAL_SORT if c in names and c not in keys]
    cols: dict[str, np.ndarray] = {}
    sort_keys: dict[str, np.ndarray] = {}  # integer keys for string columns, same order
    for name in names:
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type):
            # NOTE: decoded through the dictionary (a few distinct strings), not row by
            # row, and sorted by each dictionary entry's rank: the order of the texts.
            cols[name], sort_keys[name] = _decode(col)
            continue
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            cols[name] = np.array(col.to_pylist(), dtype=object)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols[name] = col.to_numpy(zero_copy_only=False).astype(object, copy=False)
        else:
            cols[name] = col.to_numpy(zero_copy_only=False)
    def key(k: str) -> np.ndarray:
        return sort_keys[k] if k in sort_keys else _sort_key(cols[k])

    order = _canonical_order(keys, key) if len(table) else np.arange(0)
    return {k: v[order] for k, v in cols.items()}


def _canonical_order(keys: list[str], key: Callable[[str], np.ndarray]) -> np.ndarray:
    """``np.lexsort`` of every key column, sorting on (time, node, seq, kind) first.

    NOTE: (node, seq, kind) identifies a row of a log with ``seq``, so sorting on those four
    gives the full order; the remaining keys are only sorted on (a lexsort of all of them,
    the same order) if some rows tie on the four, so any log sorts as before.
    """
    first = keys[:4]
    if first != ["time", "node", "seq", "kind"]:
        return np.lexsort([key(k) for k in reversed(keys)])
    cols = [key(k) for k in first]
    order = np.lexsort(cols[::-1])
    if len(order) > 1:
        tie = np.ones(len(order) - 1, dtype=bool)
        for c in cols:
            s = c[order]
            tie &= s[1:] == s[:-1]
        if tie.any():
            return np.lexsort([key(k) for k in reversed(keys)])
    return order


def _decode(col: pa.DictionaryArray) -> tuple[np.ndarray, np.ndarray]:
    """A dictionary string column as an object array (None for null) and its sort key.

    The key is what :func:`_sort_key` gives the decoded values, up to a monotone relabelling
    (so lexsort orders rows the same): the rank of each text, null ranked as "".
    """
    values = np.array([*col.dictionary.to_pylist(), None], dtype=object)
    idx = pc.fill_null(col.indices, len(values) - 1).to_numpy(zero_copy_only=False)
    texts = np.array(["" if v is None else v for v in values.tolist()], dtype=object)
    _, rank = np.unique(texts, return_inverse=True)
    return values[idx], rank.reshape(-1)[idx]


def _sort_key(values: np.ndarray) -> np.ndarray:
    """A column usable by lexsort: strings by their text (None first), numbers as they are."""
    if values.dtype != object:
        return values
    texts = ["" if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values]
    uniq, codes = np.unique(np.array(texts, dtype=object), return_inverse=True)
    del uniq
    return codes


def run_checks(
    spec: ProtocolSpec, params: Any, events_dir: Path | None, level: str, n_nodes: int = 0
) -> SafetyResult:
    """Run the protocol's safety checks over a finished run's log (see the module docstring)."""
    checks = spec.cls.checks
    # NOTE: log_metrics is a classmethod; compare the functions to see if it is overridden.
    wants_metrics = spec.cls.log_metrics.__func__ is not Contract.log_metrics.__func__  # type: ignore[attr-defined]
    if not checks and not wants_metrics:
        return SafetyResult(checked=True)
    if not covers(level, spec.cls.log_needs) or events_dir is None:
        return SafetyResult(checked=False)
    cls = spec.cls
    events: Mapping[str, np.ndarray] = load_events(events_dir, cls.log_columns, cls.log_kinds)
    result = SafetyResult(checked=True, counts=dict.fromkeys(checks, 0))
    if wants_metrics:
        result.metrics = {
            k: float(v) for k, v in spec.cls.log_metrics(params, events, n_nodes).items()
        }
    for v in spec.cls.safety(params, events):
        if not isinstance(v, Violation):
            raise TypeError(f"{spec.name}.safety yielded {type(v).__name__}, not a Violation")
        if v.check not in result.counts:
            raise ValueError(
                f"{spec.name}.safety reported check {v.check!r}, which is not one of its "
                f"declared checks {list(checks)}"
            )
        result.counts[v.check] += 1
        if len(result.first) < KEEP:
            result.first.append(v)
    return result


def covers(level: str, needs: str) -> bool:
    """Whether a run logged at ``level`` holds what checks needing ``needs`` read."""
    return level == "all" or (level == "observations" and needs == "observations")


__all__ = ["KEEP", "SafetyResult", "covers", "load_events", "run_checks"]
