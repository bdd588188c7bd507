"""Everything a run writes is the same under every ``PYTHONHASHSEED``: contents and column order."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HELPER = Path(__file__).with_name("hashseed_run.py")
ROOT = Path(__file__).resolve().parents[1]
# Measured per run, so they differ between any two runs: compared by presence only.
VOLATILE = {"wall_seconds", "peak_rss_mib"}


def _canonical(path: Path) -> tuple[list[str], str]:
    """A parquet file's column order and a hash of its rows in a canonical order."""
    table = pq.read_table(path)
    names = table.column_names
    keep = [c for c in names if c not in VOLATILE]
    table = table.select(keep)
    for i, f in enumerate(table.schema):  # dictionaries sort by their values
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    sortable = [c for c in keep if not pa.types.is_list(table.schema.field(c).type)]
    table = table.sort_by([(c, "ascending") for c in sortable])
    return names, hashlib.sha256(repr(table.to_pylist()).encode()).hexdigest()


def _outputs(out: Path) -> dict[str, object]:
    files: dict[str, object] = {}
    for p in sorted(out.rglob("*")):
        if p.is_dir() or p.name.endswith(".lock"):
            continue
        rel = str(p.relative_to(out))
        files[rel] = _canonical(p) if p.suffix == ".parquet" else p.read_bytes()
    return files


def test_every_output_file_is_the_same_under_every_hash_seed(tmp_path: Path) -> None:
    results = {}
    for seed in ("0", "1", "2", "12345"):
        out = tmp_path / f"seed-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, str(HELPER), str(out)], cwd=ROOT, env=env, check=True,
                       timeout=300)
        results[seed] = _outputs(out)
    first = results["0"]
    assert any(k.endswith("runs.parquet") for k in first)
    assert sum(k.startswith("hs/events/run_id=") for k in first) >= 2  # both runs' parts
    names, _ = first["hs/runs.parquet"]  # type: ignore[misc]
    assert {"informed_nodes", "zeta_nodes", "alpha_nodes", "mid_time"} <= set(names)
    for seed, files in results.items():
        assert files.keys() == first.keys(), seed
        for name, value in files.items():
            assert value == first[name], (seed, name)
