"""Columnar event buffers written as Parquet record batches by each shard.

Rows arrive as whole numpy columns (a window's deliveries, timers, sends) or a few at a
time; they are buffered per column and written as one row group once ``batch_rows`` have
accumulated, so memory stays flat however long the run. Strings (kinds, message types,
observation names) are dictionary-encoded through a per-writer :class:`StringTable`.
Observation rows come with their typed values (:class:`ObsValues`); the typed columns are
null on every other row, which costs almost nothing in Parquet (see the README).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysim.log.arrays import decoded, numeric, strings
from raysim.log.schema import (
    EVENT_SCHEMA,
    KINDS,
    OBS,
    V_FLOAT,
    V_STR,
    V_VEC,
    VALUE_TYPES,
    event_schema,
)


class StringTable:
    """Interns strings to dense int32 codes (-1 stands for null)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        """The code of ``name``, added on first sight."""
        c = self._codes.get(name)
        if c is None:
            c = self._codes[name] = len(self.names)
            self.names.append(name)
        return c

    def codes(self, names: Iterable[str]) -> np.ndarray:
        """Codes of several names, as an int32 array."""
        if isinstance(names, list) and names == self.names[: len(names)]:
            # NOTE: the table's own names (a batch of this process's sends names its types
            # by the whole table, every window): code i is position i, no lookups
            return np.arange(len(names), dtype=np.int32)
        return np.array([self.code(n) for n in names], dtype=np.int32)


def tag_name(tag: Hashable) -> str:
    """How a timer tag is written in the log: a string as is, a tuple by its first item."""
    if isinstance(tag, str):
        return tag
    if isinstance(tag, tuple) and tag and isinstance(tag[0], str):
        return tag[0]
    return type(tag).__name__


@dataclass
class ObsValues:
    """Typed values of a batch of observation rows (see :mod:`raysim.log.schema`).

    ``num`` is the ``value`` column (numbers as floats, NaN for str and vector values);
    ``vtype`` holds each row's type code (``V_FLOAT`` ...), or is None when every row is a
    float (the common case, which then costs nothing more than the ``value`` column);
    ``ints`` the exact integer of int and bool values (anything elsewhere); ``strs`` and
    ``vecs`` are per-row lists (None where the row is of another type), or None when no row
    is a str / a vector.
    """

    num: np.ndarray
    vtype: np.ndarray | None = None
    ints: np.ndarray | None = None
    strs: list[str | None] | None = None
    vecs: list[np.ndarray | None] | None = None

    @classmethod
    def floats(cls, values: np.ndarray) -> ObsValues:
        """Rows that are all floats."""
        return cls(values)


def _clock_key(node: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """One int64 per (node, seq): node in the high 31 bits, seq in the low 32."""
    return (node << 32) | seq


_NCOLS = 10  # time, kind, node, seq, cause, peer, msg_id, msg_type, name, value
_compiled: ModuleType | None
try:
    from raysim.log import _join as _compiled
except ImportError:  # not built (no C compiler at install time): the Python join below
    _compiled = None


def _join() -> ModuleType | None:
    """The compiled row-group join (:mod:`raysim.log._join`) unless it is not built or
    ``RAYSIM_PURE_PYTHON=1`` (read at each row group, so a test can switch it)."""
    return None if os.environ.get("RAYSIM_PURE_PYTHON", "") == "1" else _compiled


# (the kind column is joined as int32, the width of its dictionary indices in the file)
_DTYPES = (np.int64, np.int32) + (np.int64,) * 5 + (np.int32, np.int32, np.float64)
TYPED_COLUMNS = ("value_type", "value_int", "value_str", "value_vec")


def _column(x: Any, n: int, dtype: type) -> np.ndarray | int | float:
    """``x`` as a buffered column of ``n`` rows: an array as it is (in ``dtype``), a scalar
    kept as the scalar (repeated only when the row group is built, see :func:`_joined`).
    """
    t = type(x)
    if t is np.ndarray:
        if x.dtype.type is dtype and x.shape == (n,):  # NOTE: the common case, two tests
            return x
    elif t is int or t is float:
        return x
    if isinstance(x, int | float | np.integer | np.floating):
        return x.item() if isinstance(x, np.generic) else x
    a: np.ndarray = np.asarray(x, dtype=dtype)
    return a if a.shape == (n,) else np.broadcast_to(a, (n,))


def _normalise(dtype: type) -> Any:
    """``_column`` for one dtype, as the compiled join calls it: ``(x, n) -> chunk``."""
    return lambda x, n: _column(x, n, dtype)


def _joined(chunks: list[np.ndarray | int | float], lens: list[int], dtype: type) -> np.ndarray:
    """One column from its buffered chunks: arrays, or scalars standing for ``lens[i]`` rows.

    NOTE: buffering a scalar column as its scalar (most rows have several: the cause, peer,
    msg_id of an observation, the kind of every row) keeps a row group's buffer at what the
    window's arrays hold; the column is built in one pass at flush time, in the final buffer.
    """
    arrays = sum(1 for c in chunks if type(c) is np.ndarray)
    out: np.ndarray
    if arrays == len(chunks):  # NOTE: one C call, not a slice assignment per chunk
        out = np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
        return out  # (each chunk is in ``dtype`` already, see _column)
    if not arrays:  # every chunk a scalar (the ``kind`` column)
        out = np.repeat(np.array(chunks, dtype=dtype), lens)
        return out
    out = np.empty(sum(lens), dtype=dtype)
    at = 0
    for c, n in zip(chunks, lens, strict=True):
        out[at : at + n] = c
        at += n
    return out


# NOTE: a batch this long goes into its row group as the array it came in (zero-copy), not
# copied into one joined column: the cycle workload's observations are 100,000-row batches,
# and a joined row group of 500,000 rows was 34 MB more at the run's peak (README,
# cycle-driven). Shorter batches (a per-node window's ~70 rows) are joined into one array.
_WHOLE = 1 << 15


class _Constants:
    """Arrays of one value, shared by every chunk and column of a row group that needs
    that value (a long batch's scalar columns: kind, cause, peer, msg_id ...)."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, bytes], np.ndarray] = {}

    def get(self, dtype: type, value: Any, n: int) -> np.ndarray:
        """``n`` rows of ``value`` in ``dtype`` (a read-only view of a shared array)."""
        # NOTE: numpy's casting of ``value``, as a slice assignment of it would do
        a: np.ndarray = np.full(1, value, dtype=dtype)
        key = (a.dtype.str, a.tobytes())
        have = self._arrays.get(key)
        if have is None or len(have) < n:
            have = self._arrays[key] = np.full(n, a[0], dtype=dtype)
            have.flags.writeable = False
        return have[:n]


def _segments(
    chunks: tuple[Any, ...], lens: list[int], dtype: type, consts: _Constants
) -> list[tuple[np.ndarray, bool]]:
    """A column's buffered chunks as a few contiguous arrays, each with whether this row
    group owns it (may change it in place): runs of short batches joined into one array
    (compiled, or :func:`_joined` on the Python path), each long batch as it came (a
    scalar or a broadcast scalar as a shared constant)."""
    join = _join()
    out: list[tuple[np.ndarray, bool]] = []
    start = 0

    def run_until(stop: int) -> None:
        if stop > start:
            part, plens = chunks[start:stop], lens[start:stop]
            if join is not None:
                out.append((join.join_chunks(part, plens, dtype, _normalise(dtype)), True))
            else:
                cs = [_column(x, k, dtype) for x, k in zip(part, plens, strict=True)]
                out.append((_joined(cs, plens, dtype), True))

    for i, k in enumerate(lens):
        if k < _WHOLE:
            continue
        run_until(i)
        start = i + 1
        x = _column(chunks[i], k, dtype)
        if type(x) is not np.ndarray:
            out.append((consts.get(dtype, x, k), False))
        elif x.strides == (0,):  # a broadcast scalar
            out.append((consts.get(dtype, x[0], k), False))
        elif x.flags.c_contiguous:
            out.append((x, False))
        else:
            out.append((np.ascontiguousarray(x), True))
    run_until(len(lens))
    return out


def _chunked(arrays: list[pa.Array]) -> pa.Array | pa.ChunkedArray:
    """One column of a row group: the array, or its arrays as one chunked column."""
    return arrays[0] if len(arrays) == 1 else pa.chunked_array(arrays)


@dataclass
class _RowGroup:
    """A row group's buffered rows, as :meth:`EventLog.flush` hands them to the writer's
    thread: the batches, their lengths, typed observation values, clocks and the string
    table's names as they were (the buffered codes index them)."""

    adds: list[tuple[Any, ...]]
    lens: list[int]
    typed: list[tuple[int, ObsValues]]
    clocks: list[np.ndarray]
    names: list[str]


class EventLog:
    """One shard's (or router's) part of a run's event log.

    ``path`` is the Parquet file to write, or None to count rows without writing
    (``level = "none"``). ``messages`` says whether message and timer rows are kept
    (``level = "all"``); observation and lifecycle rows are always kept when writing.
    """

    def __init__(
        self, path: Path | None, level: str, batch_rows: int = 500_000, causality: str = "none"
    ) -> None:
        self.path = path
        self.causality = causality
        self.schema = event_schema(causality)
        self.level = level
        self.messages = level == "all" and path is not None
        self.writing = path is not None and level != "none"
        self.batch_rows = batch_rows
        self.strings = StringTable()
        self.rows_written = 0
        # the buffered batches: (time, kind, node, seq, cause, peer, msg_id, msg_type, name,
        # value), each an array or a scalar standing for every row of the batch
        self._adds: list[tuple[Any, ...]] = []
        self._lens: list[int] = []  # rows of each buffered batch
        self._typed: list[tuple[int, ObsValues]] = []  # (first buffered row, values)
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        # NOTE: pyarrow encodes and compresses without the GIL, so row groups are built and
        # written on a thread of their own while the simulation goes on: on two cores
        # logging is nearly free. One pending write at a time keeps memory flat.
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._tag_cache: dict[Hashable, int] = {}
        # Causality tracking: the clocks of the rows buffered, and the (node, seq) -> clock
        # table of the events being logged now (see :meth:`stamp`).
        self._clocks: list[np.ndarray] = []
        self._stamp_keys = np.zeros(0, dtype=np.int64)
        self._stamp_clock = np.zeros((0, 1), dtype=np.int64)

    def stamp(self, node: np.ndarray, seq: np.ndarray, clock: np.ndarray) -> None:
        """The clocks of the events about to be logged: ``clock[i]`` (the Lamport time,
        then in vector mode the vector clock) is that of event ``seq[i]`` at ``node[i]``.

        Every row added until the next call takes the clock of its (node, seq): an event's
        own rows and the network's rows about a send (which carry the send's seq) alike.
        """
        if self.causality == "none" or not self.writing:
            return
        keys = _clock_key(np.asarray(node, dtype=np.int64), np.asarray(seq, dtype=np.int64))
        order = np.argsort(keys, kind="stable")
        self._stamp_keys = keys[order]
        self._stamp_clock = clock[order]
        if clock.shape[1] > 1:  # NOTE: a row group of vector clocks is kept to ~128 MiB
            self.batch_rows = min(self.batch_rows, max(1000, (1 << 24) // clock.shape[1]))

    def _clock_rows(self, node: np.ndarray, seq: np.ndarray) -> np.ndarray:
        keys = _clock_key(node, seq)
        at = np.searchsorted(self._stamp_keys, keys)
        at = np.minimum(at, len(self._stamp_keys) - 1)
        if len(self._stamp_keys) == 0 or not np.array_equal(self._stamp_keys[at], keys):
            raise AssertionError("an event logged without a clock (engine bug)")
        return self._stamp_clock[at]

    def tag_codes(self, tags: list[Any]) -> np.ndarray:
        """String codes of timer tags (cached per distinct tag)."""
        cache = self._tag_cache
        try:  # NOTE: nearly every tag is cached: one C-level pass, no Python loop
            return np.fromiter(map(cache.__getitem__, tags), dtype=np.int32, count=len(tags))
        except (KeyError, TypeError):
            pass
        out = np.empty(len(tags), dtype=np.int32)
        for i, t in enumerate(tags):
            c = cache.get(t)
            if c is None:
                c = self.strings.code(tag_name(t))
                if len(cache) < 10_000:
                    cache[t] = c
            out[i] = c
        return out

    def add(
        self,
        time: np.ndarray,
        kind: int,
        node: np.ndarray,
        seq: np.ndarray | int,
        peer: np.ndarray | int = -1,
        msg_id: np.ndarray | int = -1,
        msg_type: np.ndarray | int = -1,
        name: np.ndarray | int = -1,
        value: np.ndarray | float = np.nan,
        cause: np.ndarray | int = -1,
    ) -> None:
        """Buffer rows of one kind; scalars are broadcast to the length of ``time``."""
        n = len(time)
        if n == 0 or not self.writing:
            return
        # NOTE: a batch is kept as it came and put into columns when its row group is built
        # (one tuple a batch here, not ten conversions and appends on the hot path)
        self._adds.append((time, kind, node, seq, cause, peer, msg_id, msg_type, name, value))
        self._lens.append(n)
        if self.causality != "none":
            node_col, seq_col = (
                np.broadcast_to(_column(x, n, np.int64), (n,)) for x in (node, seq)
            )
            self._clocks.append(self._clock_rows(node_col, seq_col))
        self._buffered += n
        if self._buffered >= self.batch_rows:
            self.flush()

    def add_obs(
        self,
        time: np.ndarray,
        node: np.ndarray,
        seq: np.ndarray,
        name: np.ndarray | int,
        peer: np.ndarray | int,
        ref: np.ndarray | int,
        values: ObsValues,
    ) -> None:
        """Buffer observation rows with their typed values."""
        if len(time) == 0 or not self.writing:
            return
        if values.vtype is not None:
            self._typed.append((self._buffered, values))
        self.add(time, OBS, node, seq, peer, ref, -1, name, values.num)

    def _table(self, group: _RowGroup) -> pa.Table:
        """The Arrow table of a row group's buffered rows (on the writer's thread)."""
        lens = group.lens
        raw: list[Any] = list(zip(*group.adds, strict=True))  # each column's chunks
        group.adds.clear()
        consts = _Constants()
        cols: list[list[tuple[np.ndarray, bool]]] = []
        for i, dtype in enumerate(_DTYPES):  # NOTE: each chunk list let go once joined
            cols.append(_segments(raw[i], lens, dtype, consts))
            raw[i] = None
        n = sum(lens)
        # NOTE: numeric() and strings(), not pa.array(): see raysim.log.arrays (no pandas)
        kinds = strings(list(KINDS))
        names = strings(group.names)

        def dict_col(segments: list[tuple[np.ndarray, bool]]) -> pa.Array | pa.ChunkedArray:
            out = []
            for codes, owned in segments:
                # a null (-1) is a masked 0: in place in a column this row group owns, a
                # shared 0 where every row is null, a copy only of a long batch with nulls
                mask = codes < 0
                if mask.all():
                    codes = consts.get(np.int32, 0, len(codes))
                elif owned:
                    np.maximum(codes, 0, out=codes)
                elif mask.any():
                    codes = np.maximum(codes, 0)
                out.append(pa.DictionaryArray.from_arrays(numeric(codes, mask=mask), names))
            return _chunked(out)

        arrays = [
            _chunked([numeric(c) for c, _ in cols[0]]),
            _chunked([pa.DictionaryArray.from_arrays(numeric(c), kinds) for c, _ in cols[1]]),
            *(_chunked([numeric(c) for c, _ in segs]) for segs in cols[2:7]),
            dict_col(cols[7]),
            dict_col(cols[8]),
            _chunked([numeric(c) for c, _ in cols[9]]),
            *self._typed_arrays(n, group.typed),
        ]
        clocks = group.clocks
        if self.causality != "none":
            arrays.append(numeric(np.concatenate([c[:, 0] for c in clocks])))
            if self.causality == "vector":
                width = clocks[0].shape[1] - 1
                # NOTE: one copy into the final buffer (n entries a row: this is the cost)
                vec = np.empty((n, width), dtype=np.int64)
                at = 0
                for c in clocks:
                    vec[at : at + len(c)] = c[:, 1:]
                    at += len(c)
                offsets = numeric(np.arange(n + 1, dtype=np.int32) * width)
                arrays.append(pa.ListArray.from_arrays(offsets, numeric(vec.reshape(-1))))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _typed_arrays(self, n: int, typed: list[tuple[int, ObsValues]]) -> list[pa.Array]:
        """value_type, value_int, value_str, value_vec for ``n`` buffered rows."""
        if not typed:
            return [pa.nulls(n, EVENT_SCHEMA.field(c).type) for c in TYPED_COLUMNS]
        vtype = np.full(n, -1, dtype=np.int8)
        ints = np.zeros(n, dtype=np.int64)
        for at, v in typed:
            assert v.vtype is not None and v.ints is not None
            vtype[at : at + len(v.vtype)] = v.vtype
            ints[at : at + len(v.vtype)] = v.ints
        mask = vtype <= V_FLOAT  # not an obs, or a float one: value_type is null
        out = [decoded(vtype, VALUE_TYPES, mask)]
        int_mask = mask | (vtype >= V_STR)
        out.append(numeric(ints, pa.int64(), mask=int_mask))
        strs = [(at, v.strs) for at, v in typed if v.strs is not None]
        if strs:
            col: list[str | None] = [None] * n
            for at, ss in strs:
                col[at : at + len(ss)] = ss
            out.append(strings(col))
        else:
            out.append(pa.nulls(n, pa.string()))
        vecs = [(at, v.vecs) for at, v in typed if v.vecs is not None]
        if vecs:
            lengths = np.zeros(n, dtype=np.int64)
            flat: list[np.ndarray] = []
            for at, vs in vecs:
                for i, vec in enumerate(vs):
                    if vec is not None:
                        lengths[at + i] = len(vec)
                        flat.append(vec)
            offsets = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            values = np.concatenate(flat) if flat else np.zeros(0, np.int64)
            out.append(
                pa.ListArray.from_arrays(
                    numeric(offsets), numeric(values, pa.int64()), mask=numeric(vtype != V_VEC)
                )
            )
        else:
            out.append(pa.nulls(n, pa.list_(pa.int64())))
        return out

    def flush(self) -> None:
        """Write the buffered rows as one row group."""
        if not self.writing or self._buffered == 0:
            return
        # NOTE: the previous row group is written before this one is handed over, so at most
        # one row group's table is alive beside the rows buffered (memory, README:
        # cycle-driven). The table is built on the writer's thread too: the joins and
        # conversions of a row group took 7 ms (averaging) to 80 ms (Chord's full log) on
        # the simulation's thread, and most of it runs without the GIL.
        self._wait()
        group = _RowGroup(
            self._adds, self._lens, self._typed, self._clocks, list(self.strings.names)
        )
        if self._writer is None:
            assert self.path is not None
            dictionary = ["kind", "msg_type", "name", "value_type", "value_str"]
            compression: str | dict[str, str] = "snappy"
            if self.causality == "vector":
                # NOTE: measured on a 1000-node gossip log (README, performance): a node's
                # clock changes in few entries from one event to the next, so dictionary
                # pages and zstd take the dense vectors from 1239 to 244 bytes a row,
                # below a sparse (index, value) encoding once the clocks fill up.
                # (per-column options name the leaf paths of list columns)
                dictionary.append("vclock.list.element")
                compression = {
                    c: "snappy" for c in self.schema.names if c not in ("value_vec", "vclock")
                } | {"value_vec.list.element": "snappy", "vclock.list.element": "zstd"}
            self._writer = pq.ParquetWriter(
                self.path, self.schema, use_dictionary=dictionary, compression=compression
            )
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raysim-log")
        assert self._pool is not None
        self._pending = self._pool.submit(self._write, group)
        self.rows_written += self._buffered
        self._adds = []
        self._lens = []
        self._typed = []
        self._clocks = []
        self._buffered = 0

    def _write(self, group: _RowGroup) -> None:
        """Build and write one row group (the writer's thread; an error is raised by the
        next :meth:`flush` or :meth:`close`, whichever waits for it first)."""
        assert self._writer is not None
        self._writer.write_table(self._table(group))

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> int:
        """Flush and close the file (an empty file with the schema if nothing was logged)."""
        if not self.writing:
            return 0
        try:
            self.flush()
            self._wait()
        except BaseException:
            # a row group that failed on the writer's thread: its thread and file are let go
            # (the run fails; the runner removes what it wrote)
            self._pending = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            raise
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
        if self._writer is None:
            assert self.path is not None
            pq.write_table(self.schema.empty_table(), self.path)
        else:
            self._writer.close()
            self._writer = None
        return self.rows_written
