"""Where results live: a local directory or any pyarrow filesystem URI, and the few
operations the sweep, the analysis and the report need on it.

A *location* is the experiment's results directory (``<out>/<experiment>``)::

    runs.parquet                          one row per run (written by one process at a time)
    events/run_id=<id>/part-*.parquet     one run's event log, published whole
    sweep.json                            the manifest of the last sweep written here
    report.html                           written by ``raysim report``

Local paths use plain files, ``runs.lock`` (the same lock :func:`append_run_row`
takes) and atomic renames. A URI (``file:///…``, ``s3://…``, ``gs://…``, ``hdfs://…``: whatever
``pyarrow.fs.FileSystem.from_uri`` accepts) goes through pyarrow's filesystem layer: files
are written aside and moved into place; on object stores a "move" of a directory may be a
copy, so a run counts as finished only once its row is in ``runs.parquet`` (the row is
written after its events), and readers join events to that table.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raysim.errors import ConfigError
from raysim.log.arrays import numeric, strings

if TYPE_CHECKING:
    import pandas as pd

RUNS = "runs.parquet"
EVENTS = "events"
MANIFEST = "sweep.json"
_RUN_DIR = re.compile(r"^run_id=([0-9A-Za-z_-]+)$")
_STAGING = re.compile(r"^\.staging-([0-9A-Za-z_-]+)-[0-9a-f]+$")


def is_uri(where: str | Path) -> bool:
    """Whether ``where`` names a filesystem URI (``scheme://…``) rather than a local path."""
    return isinstance(where, str) and "://" in where


@dataclass(frozen=True)
class Location:
    """A directory on a pyarrow filesystem; ``local`` is set when it is a plain local path."""

    fs: pafs.FileSystem
    path: str
    display: str
    local: Path | None

    def child(self, *parts: str) -> Location:
        """A location below this one."""
        path = "/".join([self.path.rstrip("/"), *parts])
        display = "/".join([self.display.rstrip("/"), *parts])
        local = self.local.joinpath(*parts) if self.local is not None else None
        return Location(self.fs, path, display, local)

    def exists(self) -> bool:
        """Whether anything (file or directory) is at this location."""
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        """Whether a directory is at this location."""
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def __str__(self) -> str:
        return self.display


def locate(where: str | Path) -> Location:
    """The :class:`Location` of a local path or a pyarrow filesystem URI.

    Every URI, ``file://`` included, goes through pyarrow's filesystem layer (runs are
    written to a local temporary folder and uploaded); only plain paths are written in place.
    """
    if is_uri(where):
        text = str(where).rstrip("/")
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError) as e:
            raise ConfigError(f"{text}: not a usable filesystem URI ({e})") from None
        return Location(fs, path.rstrip("/") or "/", text, None)
    p = Path(where).expanduser().absolute()
    return Location(pafs.LocalFileSystem(), str(p), str(where), p)


# ---------------------------------------------------------------------------------------------
# runs.parquet


def read_runs(loc: Location, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The runs table at ``loc``, or None if there is none yet."""
    runs = loc.child(RUNS)
    if not runs.exists():
        return None
    try:
        with _shared_lock(loc):
            table = pq.read_table(runs.path, filesystem=loc.fs, columns=columns)
    except Exception as e:
        raise ConfigError(f"{runs}: exists but is not a raysim runs table ({e})") from None
    return table.to_pandas()


@contextmanager
def _shared_lock(loc: Location) -> Iterator[None]:
    """A shared lock on ``runs.lock`` (writers hold it exclusively while replacing the
    table); none on remote or read-only locations, where replacement is atomic anyway."""
    if loc.local is None:
        yield
        return
    try:
        # Never created here: a reader must leave a directory as it found it; with no lock
        # file there is no writer to wait for (writers create it before they lock it).
        f = open(loc.local / "runs.lock")  # noqa: SIM115
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_runs_table(loc: Location) -> None:
    """ConfigError unless ``runs.parquet`` at ``loc`` is absent or a readable runs table.

    Takes no lock and writes nothing: the table is only ever replaced by an atomic rename,
    so a reader sees the old file or the new one, whole.
    """
    runs = loc.child(RUNS)
    if not runs.exists():
        return
    try:
        schema = pq.read_schema(runs.path, filesystem=loc.fs)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{runs}: exists but is not a raysim runs table ({reason}); move it away"
        ) from None
    if "run_id" not in schema.names or "status" not in schema.names:
        raise ConfigError(
            f"{runs}: exists but is not a raysim runs table (no run_id/status columns); "
            "move it away"
        )


def remove_torn_temporaries(loc: Location) -> int:
    """Remove ``.runs-*.parquet`` temporaries (torn writes of a killed writer); returns how many.

    Call with the writers' lock held (``runs.lock``), so no live writer owns one.
    """
    if loc.local is None or not loc.local.is_dir():
        return 0
    removed = 0
    with _locked(loc.local / RUNS):
        for tmp in loc.local.glob(".runs-*.parquet"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def row_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``rows`` as an Arrow table with the types pandas' writer gives them.

    Columns are the union of the rows' keys in order of first appearance (a row without
    a key has a null there); an int is int64, a float double (NaN stored as null, as
    ``DataFrame.to_parquet`` stores it), a str large_string (pandas 3's ``str``), a bool
    bool, an all-None column Arrow's null type; an int column with a float in it is a
    double column. Built from buffers (:mod:`raysim.log.arrays`): no pandas import.
    """
    return concat_runs([
        pa.Table.from_arrays([_cell(v) for v in r.values()], names=list(r)) for r in rows])


def _cell(v: Any) -> pa.Array:
    """A one-row Arrow array of one runs-table value (see :func:`row_table`)."""
    if v is None:
        return pa.nulls(1)
    if isinstance(v, bool | np.bool_):
        return numeric(np.array([v], np.bool_))
    if isinstance(v, int | np.integer):
        return numeric(np.array([v], np.int64))
    if isinstance(v, float | np.floating):
        return numeric(np.array([v], np.float64), mask=np.array([v != v]))
    if isinstance(v, str):
        return strings([v], large=True)  # (a cast would import pyarrow.compute)
    return pa.array([v])  # anything else: as pandas hands it to pyarrow


def concat_runs(tables: list[pa.Table]) -> pa.Table:
    """Tables of runs one after another, columns unified as pandas' ``concat`` unifies them
    (int and double give double, a null column takes the other's type); no schema metadata,
    so a pandas reader gets a plain RangeIndex, as from a table pandas wrote."""
    table = tables[0] if len(tables) == 1 else pa.concat_tables(
        tables, promote_options="permissive")
    return table.replace_schema_metadata(None)


def merge_rows(old: pa.Table | None, rows: list[dict[str, Any]]) -> pa.Table:
    """``old`` with ``rows`` added, replacing any old row of the same run_id."""
    new = row_table(rows)
    if old is None or not old.num_rows:
        return new
    replaced = {r["run_id"] for r in rows}
    keep = np.array([rid not in replaced for rid in old.column("run_id").to_pylist()])
    if not keep.any():
        return new
    kept = old if keep.all() else old.filter(numeric(keep))
    return concat_runs([kept, new])


def append_rows(loc: Location, rows: list[dict[str, Any]]) -> None:
    """Add (or replace, by run_id) rows of ``runs.parquet``, atomically."""
    if not rows:
        return
    if loc.local is not None:
        loc.local.mkdir(parents=True, exist_ok=True)
        for row in rows:
            append_run_row(loc.local, row)
        return
    loc.fs.create_dir(loc.path, recursive=True)
    runs = loc.child(RUNS)
    old = None
    if runs.exists():
        with loc.fs.open_input_file(runs.path) as f:
            old = pq.ParquetFile(f).read()
    table = merge_rows(old, rows)
    tmp = loc.child(f".runs-{uuid.uuid4().hex}.parquet")
    pq.write_table(table, tmp.path, filesystem=loc.fs)
    loc.fs.move(tmp.path, runs.path)


# ---------------------------------------------------------------------------------------------
# event directories


def event_run_ids(loc: Location) -> set[str]:
    """run_ids that have a published events directory (staging folders are not counted)."""
    events = loc.child(EVENTS)
    if not events.is_dir():
        return set()
    infos = loc.fs.get_file_info(pafs.FileSelector(events.path, recursive=False))
    out = set()
    for info in infos:
        m = _RUN_DIR.match(info.base_name)
        if m and info.type == pafs.FileType.Directory:
            out.add(m.group(1))
    return out


def publish_events(src: Path, loc: Location, run_id: str) -> None:
    """Copy one finished run's local event directory to ``loc`` (a remote location).

    The files are uploaded under a hidden staging name, then moved into place; where the
    filesystem cannot move directories (object stores) they are copied and the staging
    copy removed. Readers skip hidden names, and a run counts only once its row exists.
    """
    events = loc.child(EVENTS)
    loc.fs.create_dir(events.path, recursive=True)
    staging = events.child(f".staging-{run_id}-{uuid.uuid4().hex[:8]}")
    final = events.child(f"run_id={run_id}")
    loc.fs.create_dir(staging.path, recursive=True)
    pafs.copy_files(
        str(src), staging.path,
        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=loc.fs,
    )
    if final.exists():
        loc.fs.delete_dir(final.path)
    try:
        loc.fs.move(staging.path, final.path)
    except (OSError, NotImplementedError):
        pafs.copy_files(
            staging.path, final.path, source_filesystem=loc.fs, destination_filesystem=loc.fs
        )
        loc.fs.delete_dir(staging.path)


def remove_stale_staging(loc: Location, run_ids: set[str]) -> int:
    """Remove staging folders left by interrupted attempts of ``run_ids``; returns how many.

    Only call this while no other process may be running those runs (the sweep holds
    ``.sweep.lock``). Also removes torn ``runs.parquet`` temporaries.
    """
    removed = 0
    events = loc.child(EVENTS)
    if events.is_dir():
        for info in loc.fs.get_file_info(pafs.FileSelector(events.path, recursive=False)):
            m = _STAGING.match(info.base_name)
            if m and m.group(1) in run_ids:
                loc.fs.delete_dir(info.path)
                removed += 1
    remove_torn_temporaries(loc)
    return removed


# ---------------------------------------------------------------------------------------------
# small files


def write_text(loc: Location, name: str, text: str) -> Location:
    """Write a text file atomically (aside, then moved over the old one)."""
    loc.fs.create_dir(loc.path, recursive=True)
    target = loc.child(name)
    if loc.local is not None:
        tmp = loc.local / f".{name}-{uuid.uuid4().hex[:8]}"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target.local)  # type: ignore[arg-type]
        return target
    tmp_loc = loc.child(f".{name}-{uuid.uuid4().hex[:8]}")
    with loc.fs.open_output_stream(tmp_loc.path) as f:
        f.write(text.encode("utf-8"))
    loc.fs.move(tmp_loc.path, target.path)
    return target


def read_json(loc: Location, name: str) -> Any | None:
    """A JSON file below ``loc``, or None if absent or unreadable."""
    target = loc.child(name)
    if not target.exists():
        return None
    try:
        with loc.fs.open_input_stream(target.path) as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def remove_tree(path: Path) -> None:
    """Remove a local directory tree, ignoring errors (for temporary run folders)."""
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_run_row(results: Path, row: dict[str, Any]) -> None:
    """Add (or replace, by run_id) one row of ``runs.parquet``, atomically.

    Arrow only (no pandas: a small run does not pay its import); the columns' types are
    the ones pandas' ``DataFrame([row]).to_parquet`` gave them (:func:`row_table`).
    """
    path = results / "runs.parquet"
    with _locked(path):
        # NOTE: ParquetFile, not pq.read_table, which goes through pyarrow.dataset and pandas
        old = pq.ParquetFile(path).read() if path.exists() else None
        tmp = path.with_name(f".runs-{uuid.uuid4().hex}.parquet")
        pq.write_table(merge_rows(old, [row]), tmp)
        os.replace(tmp, path)
