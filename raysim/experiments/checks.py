"""Safety checks at the end of a run: the event log in, counts of violations out.

A protocol declares ``checks`` (names) and ``safety(params, events)`` (see
:class:`raysim.api.protocol.Contract`). After every run whose protocol declares checks and
whose log is complete (``log.level = "all"``), the runner reads the run's event files with
pyarrow, hands the protocol every column as a numpy array in canonical order (time, node,
then ``seq`` where the log has it, then the remaining canonical columns, so the order is
total; in file order for a protocol whose ``log_order`` is ``"any"``), and counts what
``safety`` yields. Only the rows of the protocol's ``log_kinds``
are read, and each column when the check first looks it up (:class:`EventColumns`), so
the checks cost what they read:

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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysim.api.protocol import Contract, ProtocolSpec, Violation, equal_any
from raysim.log.arrays import codes as _codes
from raysim.log.arrays import numeric, to_numpy
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
    events_dir: Path,
    columns: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    ordered: bool = True,
) -> EventColumns:
    """Every column of a run's event log (or ``columns`` and the canonical sort keys) as
    numpy arrays, rows in canonical order (in file order if not ``ordered``); only the rows
    whose ``kind`` is in ``kinds`` if given.

    Strings (dictionary columns) become object arrays with None for null; list columns
    (vectors) become object arrays of lists. The engine's ``lamport`` column is there when
    the run tracked causality; its ``vclock`` column is not read. The result is a
    read-only mapping (:class:`EventColumns`) that reads each column from disk when it is
    first looked up.
    """
    return EventColumns(Path(events_dir), columns, kinds, ordered)


_SKIP = ("run_id", "vclock")


class EventColumns(Mapping[str, np.ndarray]):
    """A run's event log, column name -> numpy array (rows in canonical order, only the
    chosen kinds); a column is read from disk the first time it is looked up, then kept.

    NOTE (theory of operation): the log is read one row group at a time, so no more than a
    row group of any column is held beyond the rows kept. First the ``kind`` column picks
    the rows (a row group holding none of ``kinds`` is skipped), then the sort keys of those
    rows give the canonical order; each other column is read when a check asks for it. So a
    check pays for the columns it looks at, and memory holds its own rows only: the
    averaging check at 10^5 nodes reads 5 of the log's columns and keeps 3 M of its 18 M
    rows. The arrays are the ones a whole-log read, sorted and filtered, would give.
    """

    def __init__(self, events_dir: Path, columns: Iterable[str] | None,
                 kinds: Iterable[str] | None, ordered: bool = True) -> None:
        # NOTE: the part files read one by one (in path order, as a dataset would find them):
        # pyarrow.dataset costs ~0.1 s to import, and a run's log is one folder of parts.
        # The engine's vector clocks (n entries on every row) are left out: no check needs
        # them, and they would cost more than the rest of the log together.
        self._parts = sorted(
            p for p in events_dir.rglob("*.parquet")
            if not any(s.startswith((".", "_")) for s in p.relative_to(events_dir).parts)
        )
        wanted = None if columns is None else {*columns, *CANONICAL_SORT}
        keep = None if kinds is None else set(kinds)
        self._types: dict[str, pa.DataType] = {}
        # the row groups read: (part, row group, rows kept as a mask or None for all, count)
        self._groups: list[tuple[int, int, np.ndarray | None, int]] = []
        for i, part in enumerate(self._parts):
            with pq.ParquetFile(part) as f:
                for fld in f.schema_arrow:
                    if fld.name not in _SKIP and (wanted is None or fld.name in wanted):
                        self._types.setdefault(fld.name, fld.type)
                for g in range(f.num_row_groups):
                    n = f.metadata.row_group(g).num_rows
                    mask = None
                    if keep is not None and n:
                        kind = f.read_row_group(g, ["kind"], use_threads=False).column(0)
                        mask = _is_in(kind.combine_chunks(), keep)
                    k = n if mask is None else int(np.count_nonzero(mask))
                    if k:  # NOTE: a row group without a wanted kind is never read again
                        rows = None if k == n or mask is None else mask
                        self._groups.append((i, g, rows, k))
        if not self._parts:
            self._types = {f.name: f.type for f in EVENT_SCHEMA if f.name not in _SKIP}
        self._rows = sum(k for *_, k in self._groups)
        self._cache: dict[str, np.ndarray] = {}
        self._texts: dict[str, np.ndarray] = {}  # a string column's texts, indexed by code
        self._coded: dict[str, np.ndarray] = {}  # a string column's codes, in order
        # the canonical order of the kept rows, or None: they stay in file order
        self._order: np.ndarray | None = self._canonical_order() if ordered else None

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name not in self._types:
                raise KeyError(name)
            if name not in self._coded:
                self._read(name)
            if name in self._coded:  # NOTE: decoded when first asked for (see holds)
                self._cache[name] = self._texts[name][self._coded[name]]
        return self._cache[name]

    def _read(self, name: str) -> None:
        """Read column ``name`` into the cache (numbers) or as codes (strings), in order."""
        self._keep(name, self._unordered([name])[name])

    def _keep(self, name: str, values: np.ndarray) -> None:
        if self._order is not None:
            values = values[self._order]
        if name in self._texts:
            self._coded[name] = values
        else:
            self._cache[name] = values

    def holds(self, name: str, texts: Iterable[str]) -> np.ndarray:
        """Which rows' string column ``name`` holds one of ``texts`` (a bool array): the
        same as comparing ``self[name]`` with each text, without decoding the column.

        NOTE: a comparison of an object array costs ~30 ns a row, a code lookup ~1 ns; a
        check that only tests a string column never builds its objects."""
        if name not in self._types:
            raise KeyError(name)
        if name not in self._coded and name not in self._cache:
            self._read(name)
        if name not in self._coded:  # not a dictionary string column: compare the values
            return equal_any(self._cache[name], texts)
        want = set(texts)
        hits = [c for c, t in enumerate(self._texts[name].tolist()) if t in want]
        coded = self._coded[name]
        if len(hits) <= 3:  # NOTE: a comparison per text is ~10x faster than a gather
            out: np.ndarray = coded == hits[0] if hits else np.zeros(len(coded), dtype=bool)
            for c in hits[1:]:
                out |= coded == c
            return out
        lut = np.zeros(len(self._texts[name]), dtype=bool)
        lut[hits] = True
        out = lut[coded]
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def _chunks(
        self, names: list[str]
    ) -> Iterator[dict[str, tuple[pa.Array, np.ndarray | None]]]:
        """Columns ``names`` one row group at a time, in file order: each column's array and
        the mask of its kept rows (None: every row is kept).

        NOTE: one read per row group, the columns decoded on pyarrow's threads; the rows are
        picked in numpy by the sinks, not by ``Table.filter`` (pyarrow.compute costs ~0.1 s
        to import, a tenth of a small run)."""
        for i, part in enumerate(self._parts):
            groups = [(g, sel, k) for p, g, sel, k in self._groups if p == i]
            if not groups:
                continue
            with pq.ParquetFile(part) as f:
                have = [c for c in names if c in f.schema_arrow.names]
                for g, sel, k in groups:
                    t = f.read_row_group(g, have, use_threads=len(have) > 1)
                    yield {c: (t.column(c).combine_chunks(), sel) if c in have
                           else (pa.nulls(k, self._types[c]), None) for c in names}

    def _unordered(self, names: list[str]) -> dict[str, np.ndarray]:
        """Columns ``names``' kept rows in file order; a string column as integer codes
        into ``self._texts[name]``."""
        sinks = {c: _Sink(self._types[c], self._rows) for c in names}
        for chunk in self._chunks(names):
            for c in names:
                sinks[c].add(*chunk[c])
        out = {}
        for c, sink in sinks.items():
            out[c] = sink.done()
            if sink.texts is not None:
                self._texts[c] = sink.texts
        return out

    def _sort_key(self, name: str, values: np.ndarray) -> np.ndarray:
        """A column usable by lexsort (the kept rows in file order)."""
        if name in self._texts:  # the rank of each code's text, null ranked as ""
            texts = ["" if v is None else v for v in self._texts[name].tolist()]
            _, rank = np.unique(np.array(texts, dtype=object), return_inverse=True)
            return rank.reshape(-1)[values]
        return _sort_key(values)

    def _canonical_order(self) -> np.ndarray:
        """The permutation that puts the kept rows in canonical order: a stable sort on
        (time, node, seq, kind), then on every canonical key if some rows tie on those.

        The sort keys read here stay in the cache, in order (every check reads them).
        NOTE: (node, seq, kind) identifies a row of a log with ``seq``, so sorting on those
        four gives the full order, and packed into one int64 (when their ranges fit) they
        sort ~15x faster than ``np.lexsort`` of four columns. The remaining keys are only
        sorted on (a lexsort of all of them, the same order) if some rows tie on the four,
        so any log sorts as a lexsort of every key would.
        """
        names = list(self._types)
        keys = ["time", "node", *(["seq"] if "seq" in names else [])]
        keys += [c for c in CANONICAL_SORT if c in names and c not in keys]
        raw: dict[str, np.ndarray] = {}

        def key(k: str) -> np.ndarray:
            if k not in raw:
                raw.update(self._unordered([k]))
            return self._sort_key(k, raw[k])

        if self._rows:  # the first four keys, read together
            raw.update(self._unordered([k for k in keys[:4] if k in names]))

        order = None
        if not self._rows:
            order = np.arange(0)
        elif keys[:4] == ["time", "node", "seq", "kind"]:
            order = _sort_unique([key(k) for k in keys[:4]])
        if order is None:
            order = np.lexsort([key(k) for k in reversed(keys)])
        self._order = order
        for k, v in raw.items():
            self._keep(k, v)
        return order


def _is_in(kind: pa.Array, keep: set[str]) -> np.ndarray:
    """Which rows of a ``kind`` column hold one of ``keep`` (a bool array)."""
    if not pa.types.is_dictionary(kind.type):
        kind = kind.dictionary_encode()
    lut = np.array([t in keep for t in kind.dictionary.to_pylist()] + [False])
    return lut[_codes(kind.indices, len(lut) - 1)]


class _Sink:
    """One column's kept rows, gathered chunk by chunk into one numpy array.

    NOTE: numbers and string codes go straight into an array of the final length, so no
    more than a row group of Arrow memory is held; strings are decoded through their
    dictionary (a few distinct texts), not row by row. Other types (lists, plain strings)
    are converted at the end, as a whole. An integer column with nulls becomes float64
    with NaN, as pyarrow converts it.
    """

    def __init__(self, typ: pa.DataType, rows: int) -> None:
        self.typ = typ
        self.strings = pa.types.is_dictionary(typ) and pa.types.is_string(typ.value_type)
        self.numeric = pa.types.is_integer(typ) or pa.types.is_floating(typ)
        self.texts: np.ndarray | None = None  # strings: the texts the codes index
        self.index: dict[str, int] = {}
        self.chunks: list[pa.Array] = []
        self.at = 0
        dtype = np.int32 if self.strings else typ.to_pandas_dtype() if self.numeric else None
        self.out = np.empty(rows, dtype=dtype) if dtype is not None else None

    def add(self, chunk: pa.Array, keep: np.ndarray | None = None) -> None:
        """Append a chunk's rows (those where ``keep`` is True, if given)."""
        end = self.at + (len(chunk) if keep is None else int(np.count_nonzero(keep)))
        if self.out is None:
            if keep is not None:
                chunk = chunk.filter(numeric(keep))
            self.chunks.append(chunk if chunk.type == self.typ else chunk.cast(self.typ))
        elif self.strings:
            if not pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_encode()
            # -1 stands for null until the number of texts is known
            lut = np.array([self.index.setdefault(t, len(self.index)) if t is not None else -1
                            for t in chunk.dictionary.to_pylist()] + [-1], dtype=np.int32)
            codes = _codes(chunk.indices, len(lut) - 1)
            self.out[self.at:end] = lut[codes if keep is None else codes[keep]]
        else:
            values = to_numpy(chunk if chunk.type == self.typ else chunk.cast(self.typ), keep)
            if values.dtype != self.out.dtype:  # nulls in an integer column
                self.out = self.out.astype(np.result_type(self.out, values))
            self.out[self.at:end] = values
        self.at = end

    def done(self) -> np.ndarray:
        """The column: numbers, string codes (texts in :attr:`texts`) or objects."""
        if self.strings:
            assert self.out is not None
            self.out[self.out < 0] = len(self.index)
            self.texts = np.array([*self.index, None], dtype=object)
        if self.out is not None:
            return self.out
        col = pa.concat_arrays(self.chunks) if self.chunks else pa.nulls(0, self.typ)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            return np.array(col.to_pylist(), dtype=object)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            return np.array(col.to_pylist(), dtype=object)
        return to_numpy(col)


def _sort_unique(cols: list[np.ndarray]) -> np.ndarray | None:
    """The stable lexicographic order of integer columns (first column most significant),
    or None if two rows are equal on all of them."""
    ints = all(c.dtype.kind in "iu" for c in cols)
    lo = [int(c.min()) if ints else 0 for c in cols]
    span = [int(c.max()) - m + 1 if ints else 2**63 for c, m in zip(cols, lo, strict=True)]
    if math.prod(span) < 2**63:
        packed = np.zeros(len(cols[0]), dtype=np.int64)
        for c, m, w in zip(cols, lo, span, strict=True):
            packed *= w
            packed += c.astype(np.int64, copy=False) - m
        order = np.argsort(packed, kind="stable")
        s = packed[order]
        return None if (s[1:] == s[:-1]).any() else order
    order = np.lexsort(cols[::-1])
    tie = np.ones(len(order) - 1, dtype=bool)
    for c in cols:
        s = c[order]
        tie &= s[1:] == s[:-1]
    return None if tie.any() else order


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
    events: Mapping[str, np.ndarray] = load_events(
        events_dir, cls.log_columns, cls.log_kinds, ordered=cls.log_order != "any"
    )
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


__all__ = ["KEEP", "EventColumns", "SafetyResult", "covers", "load_events", "run_checks"]
