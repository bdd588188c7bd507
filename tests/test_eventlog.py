"""The event log's richer schema: message ids and causes, per-node seq, typed observations."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim import analysis as ra
from raysim.api.protocol import (
    BatchContext,
    BatchEvents,
    BatchProtocol,
    Context,
    Params,
    Protocol,
    register,
)
from raysim.cli import app
from raysim.experiments.runner import run
from raysim.log.schema import CANONICAL_SORT, EVENT_SCHEMA

from .conftest import canonical, make_config

VECTOR = (3, -1, 2**40, 0)


class TypedParams(Params):
    """Which bad value to emit at node 1's first timer ("" = none)."""

    bad: str = ""
    period: int = 1000  # unused (the suite's default config sets it)


BAD = {"tuple_of_floats": (1.0, 2.5), "dict": {"a": 1}, "nan": float("nan"), "long_str": "x" * 300}


@register("test.typed_obs")
class TypedObs(Protocol):
    """Emits one observation of every value type, sends, and points observations at causes."""

    Params: ClassVar[type[TypedParams]] = TypedParams

    def on_start(self, ctx: Context) -> None:
        ctx.emit("an_int", self.node * 10)
        ctx.emit("a_float", 0.5 + self.node)
        ctx.emit("a_bool", self.node % 2 == 0)
        ctx.emit("a_str", f"node-{self.node}")
        ctx.emit("a_vec", (*VECTOR, self.node))
        ctx.emit("start_cause", ctx.cause)
        ctx.set_timer(7, "tick")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if self.params.bad and self.node == 1:
            ctx.emit("bad", BAD[self.params.bad])
        ctx.emit("timer_cause", ctx.cause)
        mid = ctx.send((self.node + 1) % ctx.n_nodes, ("hello", self.node))
        ctx.emit("sent", mid)
        if ctx.now < 40:
            ctx.set_timer(10, "tick")

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        ctx.emit("got", ctx.cause, peer=src, ref=ctx.cause)


def _run(tmp_path: Path, protocol: str = "test.typed_obs", **proto: Any) -> Any:
    cfg = make_config(
        experiment={"protocol": protocol, "stop_when": None, "duration": 60},
        protocol=proto,
        network={"nodes": 5, "delay": {"dist": "uniform", "low": 1, "high": 9}},
    )
    return run(cfg, tmp_path)


def test_typed_observations_round_trip_through_the_log(tmp_path: Path) -> None:
    res = _run(tmp_path)
    assert res.status == "ok", res.error
    where = tmp_path / "t"
    vec = ra.observations(where, "a_vec").sort_values("node")
    assert [list(v) for v in vec["value"]] == [[*VECTOR, n] for n in range(5)]
    assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in vec["value"])
    ints = ra.observations(where, "an_int").sort_values("node")
    assert str(ints["value"].dtype) == "Int64" and list(ints["value"]) == [0, 10, 20, 30, 40]
    bools = ra.observations(where, "a_bool").sort_values("node")
    assert bools["value"].dtype == bool and list(bools["value"]) == [True, False] * 2 + [True]
    strs = ra.observations(where, "a_str").sort_values("node")
    assert list(strs["value"]) == [f"node-{n}" for n in range(5)]
    floats = ra.observations(where, "a_float").sort_values("node")
    assert floats["value"].dtype == np.float64
    assert list(floats["value"]) == [0.5, 1.5, 2.5, 3.5, 4.5]
    # Every column of the schema is in the file, in the schema's types.
    events = ra.load_events(where)
    assert list(events.columns) == ["run_id", *EVENT_SCHEMA.names]
    obs = events[events["kind"] == "obs"]
    assert set(obs["value_type"].dropna()) == {"int", "bool", "str", "vec"}  # float: null
    assert obs.loc[obs["name"] == "a_float", "value_type"].isna().all()
    assert events.loc[events["kind"] != "obs", "value_type"].isna().all()


def test_send_returns_the_msg_id_and_cause_names_what_is_handled(tmp_path: Path) -> None:
    res = _run(tmp_path)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    df = canonical(res.events_dir)
    obs = df[df["kind"] == "obs"]
    sends = df[df["kind"] == "send"]
    # ctx.send's return value is the send row's msg_id (the obs right after it, same node).
    sent = obs[obs["name"] == "sent"]
    assert len(sent) == len(sends) > 10
    assert sorted(sent["value_int"].astype(int)) == sorted(sends["msg_id"])
    # In on_message, ctx.cause is the delivered message's id.
    got = obs[obs["name"] == "got"]
    delivered = df[df["kind"] == "deliver"]
    assert len(got) == len(delivered) > 5
    assert (got["value_int"].astype(int) == got["msg_id"]).all()
    assert sorted(got["msg_id"]) == sorted(delivered["msg_id"])
    # In on_timer it is the timer's id; in on_start -1.
    timers = df[df["kind"] == "timer"]
    tc = obs[obs["name"] == "timer_cause"]
    assert sorted(zip(tc["node"], tc["value_int"].astype(int), strict=True)) == sorted(
        zip(timers["node"], timers["msg_id"], strict=True)
    )
    assert set(obs.loc[obs["name"] == "start_cause", "value_int"].astype(int)) == {-1}


def test_seq_is_each_nodes_program_order_and_cause_points_at_the_handler(tmp_path: Path) -> None:
    res = _run(tmp_path)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    df = canonical(res.events_dir)
    for node, rows in df.groupby("node"):
        own = rows[rows["kind"] != "drop"].sort_values("seq")
        assert list(own["seq"]) == list(range(len(own))), node  # dense, from 0
        assert own["time"].is_monotonic_increasing
        # start, then the five typed observations and start_cause, in emit order
        assert list(own["kind"][:7]) == ["start"] + ["obs"] * 6
        assert list(own["name"][1:7]) == [
            "an_int",
            "a_float",
            "a_bool",
            "a_str",
            "a_vec",
            "start_cause",
        ]
        by_seq = own.set_index("seq")
        for _, send in own[own["kind"] == "send"].iterrows():
            handler = by_seq.loc[send["cause"]]
            assert handler["kind"] == "timer" and handler["time"] == send["time"]
            assert send["cause"] < send["seq"]
        assert (own.loc[own["kind"] != "send", "cause"] == -1).all()
    assert list(CANONICAL_SORT[:3]) == ["time", "node", "seq"]


@pytest.mark.parametrize("bad", sorted(BAD))
def test_a_bad_observation_value_fails_the_run_at_its_handler(tmp_path: Path, bad: str) -> None:
    res = _run(tmp_path, bad=bad)
    assert res.status == "failed"
    assert res.error is not None
    first = res.error.splitlines()[0]
    assert "node 1" in first and "time 7" in first and "timer 'tick'" in first, first
    assert "emit" in res.error
    runs = pd.read_parquet(tmp_path / "t" / "runs.parquet")
    assert list(runs["status"]) == ["failed"]


def test_a_bad_observation_value_exits_1_from_the_cli(tmp_path: Path) -> None:
    exp = tmp_path / "bad.toml"
    exp.write_text(
        '[experiment]\nname = "bad"\nprotocol = "test.typed_obs"\nduration = 50\n'
        '[protocol]\nbad = "dict"\n[network]\nnodes = 3\n'
    )
    r = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path)])
    assert r.exit_code == 1
    assert "node 1, time 7" in r.stderr and "TypeError: emit: value must be" in r.stderr


@register("test.typed_obs.columnar")
class TypedObsColumns(BatchProtocol):
    """The columnar twin of TypedObs (no bad values): same log, row for row."""

    Params: ClassVar[type[TypedParams]] = TypedParams
    message_types: ClassVar[tuple[str, ...]] = ("tuple",)

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        n = len(ev.node)
        ctx.emit(ev.node, ev.time, "an_int", ev.node * 10)
        ctx.emit(ev.node, ev.time, "a_float", 0.5 + ev.node)
        ctx.emit(ev.node, ev.time, "a_bool", ev.node % 2 == 0)
        ctx.emit(ev.node, ev.time, "a_str", [f"node-{n}" for n in ev.node.tolist()])
        vecs = np.column_stack([np.tile(np.array(VECTOR), (n, 1)), ev.node])
        ctx.emit(ev.node, ev.time, "a_vec", vecs)
        ctx.emit(ev.node, ev.time, "start_cause", ev.cause)
        ctx.set_timer(ev.node, ev.time + 7, "tick")

    def on_timer(self, ctx: BatchContext, ev: BatchEvents) -> None:
        ctx.emit(ev.node, ev.time, "timer_cause", ev.cause)
        mid = ctx.send(ev.node, ev.time, (ev.node + 1) % ctx.n_nodes, 0)
        ctx.emit(ev.node, ev.time, "sent", mid)
        again = ev.time < 40
        ctx.set_timer(ev.node[again], ev.time[again] + 10, "tick")

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        ctx.emit(ev.node, ev.time, "got", ev.cause, peer=ev.src, ref=ev.cause)


def test_the_columnar_context_writes_the_same_typed_log(tmp_path: Path) -> None:
    per_node = _run(tmp_path / "a")
    columnar = _run(tmp_path / "b", "test.typed_obs.columnar")
    assert per_node.status == columnar.status == "ok", columnar.error
    a, b = canonical(per_node.events_dir), canonical(columnar.events_dir)
    a["msg_type"] = a["msg_type"].where(a["kind"] != "send", "tuple")  # payload type names
    a["msg_type"] = a["msg_type"].where(a["kind"] != "deliver", "tuple")
    for df in (a, b):
        df["value_vec"] = df["value_vec"].map(lambda v: None if v is None else tuple(v))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("whole", [None, 40], ids=["short-batches", "long-batches-as-they-are"])
@pytest.mark.parametrize("pure", ["0", "1"], ids=["compiled-join", "python-join"])
def test_scalar_and_array_columns_mix_across_row_groups(
    tmp_path: Path, pure: str, whole: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks whose columns are scalars in one add and arrays in the next, and numpy
    scalars, come back row for row whatever row group they land in (with the compiled
    row-group join and with the Python one; with every batch joined, and with batches of
    40 rows or more written as they came, between runs of joined ones)."""
    import pyarrow.parquet as pq

    monkeypatch.setenv("RAYSIM_PURE_PYTHON", pure)

    from raysim.log import eventlog as el
    from raysim.log.eventlog import EventLog
    from raysim.log.schema import KINDS

    if whole is not None:
        monkeypatch.setattr(el, "_WHOLE", whole)

    log = EventLog(tmp_path / "e.parquet", "all", batch_rows=1000)
    rng = np.random.default_rng(5)
    want: list[tuple[Any, ...]] = []
    for i in range(40):
        n = int(rng.integers(1, 120))
        t = np.arange(n, dtype=np.int64) + 1000 * i
        node = rng.integers(0, 50, n)
        seq: Any = rng.integers(0, 9, n) if i % 2 else np.int64(i)
        peer: Any = -1 if i % 3 else rng.integers(0, 50, n)
        value: Any = rng.random(n) if i % 4 == 1 else 0.25 * i
        if i % 5 == 2:  # a broadcast scalar, and an array in another dtype
            peer, node = np.broadcast_to(np.int64(7), (n,)), node.astype(np.int16)
        if i % 7 == 3:  # strided, not C-contiguous
            value = np.repeat(rng.random(n), 2)[::2]
        kind = i % len(KINDS)
        log.add(t, kind, node, seq, peer=peer, value=value, cause=i)
        for j in range(n):
            pick = [x if np.ndim(x) == 0 else x[j] for x in (seq, peer, value)]
            want.append(
                (
                    int(t[j]),
                    KINDS[kind],
                    int(node[j]),
                    int(pick[0]),
                    i,
                    int(pick[1]),
                    float(pick[2]),
                )
            )
    assert log.close() == len(want)
    f = pq.ParquetFile(tmp_path / "e.parquet")
    assert f.num_row_groups > 2
    got = f.read().to_pandas()
    cols = ["time", "kind", "node", "seq", "cause", "peer", "value"]
    assert list(got[cols].itertuples(index=False, name=None)) == want
    assert (got["msg_id"] == -1).all() and got["name"].isna().all()


def test_a_long_batch_goes_into_its_row_group_without_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of ``_WHOLE`` rows or more is written from the arrays it came in (its scalar
    columns from one shared constant), not copied into a joined column: the cycle
    workload's memory at 10^5 nodes (README). Short batches are still joined, and every
    row is in the file."""
    import pyarrow.parquet as pq

    from raysim.log import eventlog as el

    tables: list[Any] = []
    table = el.EventLog._table

    def keep(self: el.EventLog, group: Any) -> Any:
        tables.append(table(self, group))
        return tables[-1]

    monkeypatch.setattr(el.EventLog, "_table", keep)
    n = el._WHOLE
    log = el.EventLog(tmp_path / "e.parquet", "observations", batch_rows=3 * n)
    t, node = np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) % 97
    value = np.linspace(0.0, 1.0, n)
    log.add(t[:5], 7, node[:5], 0, value=value[:5])  # short: joined with the next short one
    log.add(t[:6], 7, node[:6], 1, value=value[:6])
    log.add(t, 7, node, 2, peer=-1, value=value)  # long: as it came
    log.add(t, 7, node, 3, name=0, value=value)
    log.strings.code("x")
    assert log.close() == 11 + 2 * n
    (got,) = tables
    time = got.column("time")
    assert [len(c) for c in time.chunks] == [11, n, n]
    assert time.chunk(1).buffers()[1].address == t.ctypes.data
    assert got.column("value").chunk(2).buffers()[1].address == value.ctypes.data
    seq = got.column("seq")  # a scalar column: one constant for both long batches' rows
    assert seq.chunk(1).to_pylist() == [2] * n and seq.chunk(2).to_pylist() == [3] * n
    peer, cause = got.column("peer"), got.column("cause")
    assert peer.chunk(1).buffers()[1].address == cause.chunk(2).buffers()[1].address
    back = pq.read_table(tmp_path / "e.parquet")
    assert back.column("name").to_pylist() == [None] * (11 + n) + ["x"] * n
    assert back.column("seq").to_pylist() == [0] * 5 + [1] * 6 + [2] * n + [3] * n


def test_row_groups_are_built_on_the_writer_thread_and_their_errors_still_fail_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full row group is joined and converted by the log's writer thread, not by the
    thread that adds rows, and a row that cannot be converted is raised by ``close`` (the
    run then fails) rather than lost with the thread."""
    import threading

    from raysim.log import eventlog as el

    builders: list[str] = []
    table = el.EventLog._table

    def spy(self: el.EventLog, group: Any) -> Any:
        builders.append(threading.current_thread().name)
        return table(self, group)

    monkeypatch.setattr(el.EventLog, "_table", spy)
    log = el.EventLog(tmp_path / "ok.parquet", "all", batch_rows=10)
    for i in range(5):
        log.add(np.arange(6, dtype=np.int64), 0, np.full(6, i), i)
    assert log.close() == 30
    assert len(builders) == 3 and all(b.startswith("raysim-log") for b in builders), builders

    bad = el.EventLog(tmp_path / "bad.parquet", "all", batch_rows=10)
    bad.add(np.arange(12, dtype=np.int64), 0, np.zeros(12, dtype=np.int64), ["x"] * 12)
    with pytest.raises(ValueError):
        bad.close()
    assert bad._pool is None and bad._writer is None  # the thread and the file let go


def _chunk_zoo(dtype: type, rng: np.random.Generator) -> tuple[list[Any], list[int]]:
    """Every kind of chunk the log buffers, and some it should not but must survive."""
    chunks: list[Any] = []
    lens: list[int] = []
    for i in range(60):
        n = int(rng.integers(0, 9))
        a = (rng.integers(-100, 100, n) if dtype is not np.float64 else rng.random(n))
        pick = i % 10
        x: Any
        if pick == 0:
            x = a.astype(dtype)  # the common case: an array in the column's dtype
        elif pick == 1:
            x = a.astype(np.int16 if dtype is not np.float64 else np.float32)  # another dtype
        elif pick == 2:
            x = np.repeat(a.astype(dtype), 2)[::2]  # strided, not C-contiguous
        elif pick == 3:
            x = np.broadcast_to(np.asarray(7, dtype=dtype), (n,))  # a broadcast scalar
        elif pick == 4:
            x = dtype(3)  # a numpy scalar
        elif pick == 5:
            x = -1  # a Python int
        elif pick == 6:
            x = float("nan") if dtype is np.float64 else 2  # a Python float / int
        elif pick == 7:
            x = 5 if dtype is np.float64 else 127  # an int into a float column; int8's top
        elif pick == 8:
            x = [int(v) for v in a]  # a list
        else:
            x = a > 0  # booleans
        chunks.append(x)
        lens.append(n)
    return chunks, lens


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.float64])
def test_the_compiled_row_group_join_gives_the_python_join_column(dtype: type) -> None:
    """``raysim.log._join.join_chunks`` against ``_joined`` over ``_column``: the same
    values in the same dtype for every kind of chunk, and the same error for an int out
    of the column's range."""
    from raysim.log import eventlog as el

    join = el._compiled
    assert join is not None, "the compiled join is not built (pip install -e . builds it)"
    rng = np.random.default_rng(11)
    for _ in range(20):
        chunks, lens = _chunk_zoo(dtype, rng)
        normal = [el._column(x, n, dtype) for x, n in zip(chunks, lens, strict=True)]
        want = el._joined(normal, lens, dtype)
        got = join.join_chunks(tuple(chunks), lens, dtype, el._normalise(dtype))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    if dtype is not np.float64:
        big = int(np.iinfo(dtype).max) + 1
        with pytest.raises(OverflowError):
            el._joined([el._column(big, 3, dtype)], [3], dtype)
        with pytest.raises(OverflowError):
            join.join_chunks((big,), [3], dtype, el._normalise(dtype))
