"""Loading a results directory into pandas: the runs table, and events or observations
joined to it by ``run_id``, read lazily and column-selected through ``pyarrow.dataset``.

A results directory is one experiment's folder (``<out>/<experiment>``, the one holding
``runs.parquet``), as a local path or a pyarrow filesystem URI. Event files are only read
for the runs that have a row in ``runs.parquet`` (by default the ``ok`` ones), so a run whose
events were published but whose row was never written (an interrupted sweep) is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from raysim.errors import ConfigError
from raysim.experiments.results import EVENTS, RUNS, Location, locate, read_runs
from raysim.log.schema import CANONICAL_SORT, EVENT_SCHEMA, READ_SCHEMA

PARAM_SECTIONS = ("experiment.", "protocol.", "network.", "faults.")
# Columns that identify a run rather than describe what was simulated.
NOT_PARAMS = {"experiment.seed", "experiment.name", "experiment.protocol"}

Where = str | Path | Location


def open_results(where: Where) -> Location:
    """The results :class:`~raysim.experiments.results.Location` of ``where``, or a ConfigError."""
    loc = where if isinstance(where, Location) else locate(where)
    if not loc.exists():
        raise ConfigError(f"{loc}: no such results directory")
    if not loc.is_dir():
        raise ConfigError(f"{loc}: not a directory; expected a results directory")
    if not loc.child(RUNS).exists():
        subdirs = sorted(
            p.name for p in (loc.local.iterdir() if loc.local else [])
            if (p / RUNS).exists()
        )
        hint = f"; experiments inside: {', '.join(subdirs)}" if subdirs else ""
        raise ConfigError(f"{loc}: no {RUNS} here, so not a raysim results directory{hint}")
    return loc


def load_runs(where: Where, status: str | None = "ok") -> pd.DataFrame:
    """The runs table (``status=None`` for every row), sorted by parameters and replicate."""
    loc = open_results(where)
    runs = read_runs(loc)
    assert runs is not None
    if status is not None:
        runs = runs[runs["status"] == status]
    keys = [c for c in [*param_columns(runs), "replicate", "seed", "run_id"] if c in runs]
    return runs.sort_values(keys, kind="stable").reset_index(drop=True)


def param_columns(runs: pd.DataFrame) -> list[str]:
    """The parameter columns of a runs table (dotted ``section.key``), seed and name excluded."""
    return [c for c in runs.columns if c.startswith(PARAM_SECTIONS) and c not in NOT_PARAMS]


def varying_params(runs: pd.DataFrame) -> list[str]:
    """Parameter columns that take more than one value across ``runs`` (the sweep's axes)."""
    out = []
    for c in param_columns(runs):
        if runs[c].astype(str).nunique(dropna=False) > 1:
            out.append(c)
    return out


def fixed_params(runs: pd.DataFrame) -> dict[str, Any]:
    """Parameter columns that are the same for every run, with their value."""
    varying = set(varying_params(runs))
    return {c: runs[c].iloc[0] for c in param_columns(runs) if c not in varying and len(runs)}


def events_dataset(where: Where) -> ds.Dataset | None:
    """The event log of every run as one lazy ``pyarrow.dataset`` (None if nothing logged).

    ``run_id`` is the hive partition column, always read as a string.
    """
    loc = open_results(where)
    events = loc.child(EVENTS)
    if not events.is_dir():
        return None
    part = ds.partitioning(pa.schema([("run_id", pa.string())]), flavor="hive")
    return ds.dataset(events.path, filesystem=loc.fs, format="parquet", partitioning=part,
                      schema=READ_SCHEMA.append(pa.field("run_id", pa.string())))


def load_events(
    where: Where,
    columns: Sequence[str] | None = None,
    filter: ds.Expression | None = None,
    run_ids: Sequence[str] | None = None,
    params: Sequence[str] = (),
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Events of the given runs (default: every ok run) with only ``columns`` read.

    ``filter`` is a pyarrow expression, e.g. ``ds.field("kind") == "obs"``; ``params`` are
    runs-table columns to join on ``run_id`` (e.g. ``["network.nodes", "protocol.mode"]``).
    Columns are those of :data:`raysim.log.schema.EVENT_SCHEMA` (the default), and the
    engine's clocks ``lamport`` and ``vclock`` when asked for by name (null for a run
    without ``[log] causality``); ``value_int`` and ``lamport`` are read as nullable
    ``Int64`` (exact), ``value_vec`` and ``vclock`` as numpy int64 arrays (None where null).
    A log written before a column existed reads it as null.
    """
    if runs is None:
        runs = load_runs(where)
    ids = list(runs["run_id"]) if run_ids is None else list(run_ids)
    cols = list(columns) if columns is not None else list(EVENT_SCHEMA.names)
    if "run_id" not in cols:
        cols = ["run_id", *cols]
    dataset = events_dataset(where)
    expr = ds.field("run_id").isin(ids)
    if filter is not None:
        expr = expr & filter
    if dataset is None or not ids:
        fields = [READ_SCHEMA.field(c) if c != "run_id" else pa.field("run_id", pa.string())
                  for c in cols]
        table = pa.schema(fields).empty_table()
    else:
        table = _read_events(dataset, cols, expr, where)
    frame = _to_pandas(table)
    frame["run_id"] = frame["run_id"].astype(str)
    frame = _canonical_order(frame)
    if params:
        frame = frame.merge(runs[["run_id", *params]], on="run_id", how="left")
    return frame


def _read_events(
    dataset: ds.Dataset, cols: list[str], expr: ds.Expression, where: Where
) -> pa.Table:
    """The selected event rows, or one ConfigError line if a part file cannot be read."""
    try:
        return dataset.to_table(columns=cols, filter=expr)
    except (pa.ArrowException, OSError) as e:
        text = str(e).strip().splitlines()
        reason = text[0] if text else type(e).__name__
        raise ConfigError(
            f"{where}: an event log file cannot be read ({reason}); "
            "rerun that run, or move its events/run_id=… folder away"
        ) from None


def _canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Events in the log's canonical order, whatever the number and order of part files.

    NOTE: analysis sums floats over these rows; summing in one fixed order makes results
    independent of how many shards (part files) a run wrote.
    """
    if not len(frame):
        return frame
    keys = [c for c in ("run_id", *CANONICAL_SORT) if c in frame.columns and _sortable(frame[c])]
    if not keys:
        return frame
    return frame.sort_values(keys, kind="stable", key=_by_value).reset_index(drop=True)


def _sortable(col: pd.Series) -> bool:
    """Scalar columns sort; a column of vectors (lists) does not."""
    if col.dtype != object:
        return True
    first = col.dropna()
    return not len(first) or not isinstance(first.iloc[0], (list, tuple, np.ndarray))


def _by_value(col: pd.Series) -> pd.Series:
    # Categories (Arrow dictionaries) are ordered as the files listed them: sort by text.
    return col.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """A table as pandas, with ``value_int`` and ``lamport`` exact (Int64) rather than float."""
    exact = [c for c in ("value_int", "lamport") if c in table.column_names]
    if not exact:
        return table.to_pandas()
    frame = table.drop_columns(exact).to_pandas()
    for c in exact:
        ints = table.column(c).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        frame.insert(table.column_names.index(c), c, ints.array)
    return frame


TYPED = ["value", "value_type", "value_int", "value_str", "value_vec"]


def typed_values(frame: pd.DataFrame) -> pd.Series:
    """The observation values of ``frame`` (rows with the typed columns) in their own type.

    All floats (or a log from before typed values): float64. All ints: Int64. All bools:
    bool. All strs: str objects. All vectors: numpy int64 arrays. Mixed: Python objects.
    (A float observation has a null ``value_type``.)
    """
    vt = frame["value_type"].where(frame["value_type"].notna(), "float")
    kinds = set(vt.dropna().unique().tolist())
    if kinds <= {"float"}:
        return frame["value"].astype(np.float64)
    if kinds == {"int"}:
        return frame["value_int"].astype(pd.Int64Dtype())
    if kinds == {"bool"}:
        return frame["value_int"].astype(bool)
    if kinds == {"str"}:
        return frame["value_str"].astype(object)
    if kinds == {"vec"}:
        return frame["value_vec"].astype(object)
    out: list[object] = []
    for t, f, i, txt, vec in zip(
        vt, frame["value"], frame["value_int"], frame["value_str"], frame["value_vec"],
        strict=True,
    ):
        if t == "int":
            out.append(int(i))
        elif t == "bool":
            out.append(bool(i))
        elif t == "str":
            out.append(txt)
        elif t == "vec":
            out.append(vec)
        else:
            out.append(float(f))
    return pd.Series(out, index=frame.index, dtype=object)


def observations(
    where: Where,
    name: str,
    params: Sequence[str] = (),
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ``obs`` rows named ``name``: run_id, time, node, value (+ joined ``params``).

    ``value`` has the observations' own type (see :func:`typed_values`): float64 for the
    usual numeric observations, Int64, bool, str or numpy int64 vectors otherwise.
    """
    flt = (ds.field("kind") == "obs") & (ds.field("name") == name)
    cols = ["run_id", "time", "node", *TYPED]
    frame = load_events(where, cols, flt, params=params, runs=runs)
    frame["value"] = typed_values(frame)
    return frame.drop(columns=TYPED[1:])
