"""Start-up stays cheap: what a local run imports, and the lazy protocol registry.

Each import check runs in a fresh interpreter (this test process has imported everything
already) and looks at ``sys.modules`` there. No timing is asserted: the figures come from
``raysim bench --only startup``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysim.api.protocol import registered
from raysim.experiments.results import append_run_row, merge_rows, row_table
from raysim.log.arrays import codes, decoded, numeric, strings, to_numpy
from raysim.protocols import BUILTIN, FAMILIES, aliases, available, load_all, lookup

EXPERIMENT = """\
[experiment]
name = "tiny"
protocol = "gossip.push_pull"
seed = 3
duration = "20s"
stop_when = "informed"

[protocol]
period = 1000

[network]
nodes = 30
delay = { dist = "uniform", low = 20, high = 100 }
"""

HEAVY = ("ray", "pandas", "plotly", "tqdm")


def _loaded(code: str, tmp_path: Path) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; the heavy packages and raysim families it left
    in ``sys.modules`` (and whatever ``code`` put in ``out``)."""
    script = (
        "import json, sys\nout = {}\n" + code + "\n"
        f"out['heavy'] = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "out['families'] = sorted(m.split('.')[2] for m in sys.modules\n"
        "    if m.startswith('raysim.protocols.') and m.count('.') == 2)\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_cli_and_config_validation_load_neither_ray_pandas_nor_plotly(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(EXPERIMENT, encoding="utf-8")
    got = _loaded(
        "import raysim.cli\n"
        "from raysim.experiments import config, runner\n"
        "cfg = config.load('tiny.toml', ['network.nodes=40'], None, imports=[])\n"
        "out['nodes'] = cfg.network.nodes\n",
        tmp_path,
    )
    assert got["nodes"] == 40
    assert got["heavy"] == []
    assert got["families"] == ["gossip"]  # the run's family only


def test_a_local_run_imports_no_ray_and_one_protocol_family(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(EXPERIMENT, encoding="utf-8")
    got = _loaded(
        "from raysim.cli import main\n"
        "try:\n"
        "    main(['run', 'tiny.toml', '--out', 'res'])\n"
        "except SystemExit as e:\n"
        "    out['code'] = e.code\n",
        tmp_path,
    )
    assert got["code"] in (0, None)
    assert (tmp_path / "res" / "tiny" / "runs.parquet").is_file()
    assert "ray" not in got["heavy"] and "plotly" not in got["heavy"]
    assert "tqdm" not in got["heavy"]  # stderr is not a terminal: no bar, no tqdm
    assert "pandas" not in got["heavy"]  # the checks and runs.parquet are Arrow only
    assert got["families"] == ["gossip"]


def test_the_builtin_table_is_what_the_families_register() -> None:
    load_all()
    builtin = {
        name: spec.cls.__module__
        for name, spec in registered().items()
        if spec.cls.__module__.startswith("raysim.protocols.")
    }
    assert set(builtin) == set(BUILTIN)
    for name, module in builtin.items():
        assert module.startswith(BUILTIN[name] + "."), name
    assert {m.split(".")[2] for m in BUILTIN.values()} == set(FAMILIES)


def test_lookup_by_name_and_unknown_names_list_every_protocol() -> None:
    assert lookup("chord").name == "chord"
    with pytest.raises(KeyError) as e:
        lookup("no.such.protocol")
    assert all(name in str(e.value) for name in BUILTIN)
    assert {s.name for s in available()} >= set(BUILTIN)


def test_aliases_are_the_names_of_the_same_class() -> None:
    names = [s.name for s in aliases(lookup("gossip.push"))]
    assert names == ["gossip", "gossip.pull", "gossip.push", "gossip.push_pull"]


def test_a_builtin_name_stays_reserved_before_its_family_is_imported(tmp_path: Path) -> None:
    got = _loaded(
        "import raysim.protocols\n"
        "from raysim.api.protocol import register\n"
        "class Mine:\n"
        "    pass\n"
        "try:\n"
        "    register('clocks.lamport')(Mine)\n"
        "except ValueError as e:\n"
        "    out['error'] = str(e)\n"
        "register('clocks.mine')(Mine)\n",
        tmp_path,
    )
    assert got["families"] == []  # nothing imported the causality family
    assert got["error"] == "protocol name 'clocks.lamport' is already registered"


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.float64, np.uint64])
def test_numeric_arrays_equal_pa_array(dtype: type) -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(-50, 50, size=41).astype(dtype)
    for mask in (None, rng.random(41) < 0.3, np.zeros(41, dtype=bool)):
        got, want = numeric(values, mask=mask), pa.array(values, mask=mask)
        got.validate(full=True)
        assert got.type == want.type and got.null_count == want.null_count
        assert got.equals(want)
    strided = values[::3]
    assert numeric(strided).equals(pa.array(strided))
    cast = numeric(values.astype(np.int32), pa.int64())
    assert cast.equals(pa.array(values.astype(np.int32), pa.int64()))


def test_bool_and_string_arrays_equal_pa_array() -> None:
    flags = np.random.default_rng(2).random(23) < 0.5
    assert numeric(flags).equals(pa.array(flags))
    texts = ["a", "", "héllo", None, "x" * 300]
    got = strings(texts)
    got.validate(full=True)
    assert got.equals(pa.array(texts, pa.string()))
    assert strings([]).equals(pa.array([], pa.string()))
    codes = np.random.default_rng(3).integers(0, 4, 50)
    for mask in (codes == 0, np.zeros(50, bool), np.ones(50, bool)):
        names = ["float", "int", "", "héllo"]
        want = pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int32), mask=mask), pa.array(names)).dictionary_decode()
        got = decoded(codes, names, mask)
        got.validate(full=True)
        assert got.equals(want)
    assert decoded(codes[:0], names, mask[:0]).equals(pa.array([], pa.string()))
    large = strings(texts, large=True)
    large.validate(full=True)
    assert large.equals(pa.array(texts, pa.large_string()))


def test_the_startup_workload_reports_its_parts() -> None:
    from raysim import bench, bench_startup

    assert [j["kind"] for j in bench.jobs(["startup"])] == ["startup"]
    line = bench_startup.bench_startup(nodes=50, repeats=1)
    parts = ("python_s", "imports_s", "config_s", "first_window_s", "teardown_s", "exit_s")
    assert all(line[p] > 0 for p in parts)
    assert line["fixed_s"] == pytest.approx(sum(line[p] for p in parts), abs=1e-3)
    assert line["wall_s"] == pytest.approx(line["fixed_s"] + line["loop_s"], abs=1e-3)
    assert 0 < line["fixed_cpu_s"] <= line["cpu_s"]
    assert line["windows"] > 1 and line["nodes"] == 50
    assert "ray" not in line["loaded"] and "plotly" not in line["loaded"]
    json.dumps(line)


@pytest.mark.parametrize("typ", [pa.int64(), pa.int32(), pa.uint8(), pa.float64(),
                                 pa.float32(), pa.bool_()])
def test_to_numpy_equals_pyarrows(typ: pa.DataType) -> None:
    rng = np.random.default_rng(11)
    values = [None if rng.random() < 0.3 else int(v) for v in rng.integers(0, 2, size=37)]
    for vals in (values, [v if v is not None else 1 for v in values], [], [None] * 5):
        arr = pa.array(vals, pa.int64()).cast(typ)
        for a in (arr, arr.slice(3), arr.slice(5, 20)):
            got, want = to_numpy(a), a.to_numpy(zero_copy_only=False)
            assert got.dtype == want.dtype, (typ, vals)
            np.testing.assert_array_equal(got, want)
            # with a mask: that of the filtered array, whose dtype follows the kept rows'
            # nulls (all rows, none, every other one, only the non-null ones)
            valid = np.array([v is not None for v in a.to_pylist()], dtype=bool)
            for keep in (np.ones(len(a), bool), np.zeros(len(a), bool),
                         np.arange(len(a)) % 2 == 0, valid):
                got = to_numpy(a, keep)
                want = a.filter(pa.array(keep)).to_numpy(zero_copy_only=False)
                assert got.dtype == want.dtype, (typ, vals, keep)
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("typ", [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8()])
def test_codes_are_the_values_with_nulls_replaced(typ: pa.DataType) -> None:
    rng = np.random.default_rng(12)
    values = [None if rng.random() < 0.3 else int(v) for v in rng.integers(0, 100, size=41)]
    for vals in (values, [v if v is not None else 1 for v in values], [], [None] * 5):
        arr = pa.array(vals, pa.int64()).cast(typ)
        for a in (arr, arr.slice(3), arr.slice(5, 20)):
            got = codes(a, -7)
            assert got.dtype == np.int64
            assert got.tolist() == [-7 if v is None else v for v in a.to_pylist()], (typ, vals)


def _pandas_runs(rows: list[dict]) -> pd.DataFrame:
    """The runs table as ``append_run_row`` wrote it with pandas (before 2026-12-02)."""
    table: pd.DataFrame | None = None
    for row in rows:
        new = pd.DataFrame([row])
        if table is not None:
            old = table[table["run_id"] != row["run_id"]]
            frames = [f for f in (old, new) if len(f)]
            new = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        buf = io.BytesIO()
        new.to_parquet(buf, index=False)
        table = pd.read_parquet(io.BytesIO(buf.getvalue()))
    assert table is not None
    return table


def test_the_arrow_runs_writer_gives_the_table_pandas_gave(tmp_path: Path) -> None:
    rows = [
        {"run_id": "a", "seed": 1, "x": 0.5, "nan": float("nan"), "none": None, "ok": True,
         "status": "ok", "metric.m": 3},
        {"run_id": "b", "seed": np.int64(2), "x": np.float64(1.5), "nan": 2.0, "none": None,
         "ok": False, "status": "failed", "metric.m": 0.25, "error": "boom"},
        {"run_id": "a", "seed": 3, "x": 2.5, "status": "ok", "later": "new column"},
        {"run_id": "c", "seed": 4, "x": float("nan"), "none": "now a string", "ok": True,
         "status": "ok", "metric.m": 7},
    ]
    for row in rows:
        append_run_row(tmp_path, row)
    want = _pandas_runs(rows)
    got = pd.read_parquet(tmp_path / "runs.parquet")
    pd.testing.assert_frame_equal(got, want)
    # and Arrow types for Arrow readers: pandas' writer's, but for its schema metadata
    buf = io.BytesIO()
    want.to_parquet(buf, index=False)
    arrow_want = pq.read_schema(io.BytesIO(buf.getvalue())).remove_metadata()
    assert pq.read_schema(tmp_path / "runs.parquet") == arrow_want
    assert row_table(rows[:1]).schema == pa.Schema.from_pandas(
        pd.DataFrame(rows[:1]), preserve_index=False).remove_metadata()
    assert merge_rows(None, rows[:2]).num_rows == 2
