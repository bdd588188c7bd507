"""The per-node driver's compiled hot path gives the pure-Python path's event log exactly.

``raysim.engine._hotpath`` (built by ``pip install`` from its ``.pyx``) is a compiled twin of
the pure-Python event loop and context; ``RAYSIM_PURE_PYTHON=1`` selects the pure-Python
ones. These tests run the same configurations both ways, in this process, and compare the
logs row for row, the run rows' counts and metrics, and the errors a failing handler gives.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raysim.api.protocol import Context, Protocol, register
from raysim.engine import compiled
from raysim.engine.pending import Pending
from raysim.experiments.config import ExperimentConfig, load, validate
from raysim.experiments.runner import run
from raysim.values.rng import NodeRng

from .conftest import canonical, make_config
from .test_determinism import FAULTY

ROOT = Path(__file__).resolve().parent.parent

# Per-node protocols of every family, with faults where the file has them; short runs.
FILES = {
    "chord_keys": ["experiment.duration=20s"],  # graceful churn, stored keys
    "raft_election": ["experiment.duration=3000"],
    "failure_detectors_swim": ["experiment.duration=8000"],
    "causal_broadcast": [],
    "retry_ack": ["experiment.duration=6000"],
    "bracha": [],
    "log_rebuild": ["experiment.duration=6000"],
    "lamport_three": [],
}


def test_the_install_built_the_compiled_path() -> None:
    # `make install` builds it (setup.py); if it did not, the fast path silently is not there.
    assert compiled.available()


def _run(cfg: ExperimentConfig, out: Path, pure: bool, mp: pytest.MonkeyPatch) -> Any:
    mp.setenv(compiled.ENV, "1" if pure else "0")
    assert (compiled.hotpath() is None) == pure
    res = run(cfg, out)
    mp.delenv(compiled.ENV)
    return res


def _both(cfg: ExperimentConfig, tmp: Path, mp: pytest.MonkeyPatch) -> tuple[Any, Any]:
    return _run(cfg, tmp / "compiled", False, mp), _run(cfg, tmp / "pure", True, mp)


def _same_runs(fast: Any, pure: Any) -> pd.DataFrame:
    assert fast.status == pure.status == "ok", (fast.error, pure.error)
    counts = [k for k in fast.row if k in ("sent", "delivered", "timers", "observations")]
    metrics = [k for k in fast.row if k.startswith("metric.")]
    keys = counts + metrics
    assert counts and pd.Series([fast.row[k] for k in keys], index=keys).equals(
        pd.Series([pure.row[k] for k in keys], index=keys)
    )
    a, b = canonical(fast.events_dir), canonical(pure.events_dir)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)
    return a


@pytest.mark.parametrize("name", sorted(FILES))
def test_experiment_files_give_the_same_log(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load(ROOT / "experiments" / f"{name}.toml", FILES[name])
    _same_runs(*_both(cfg, tmp_path, monkeypatch))


def test_faulty_gossip_reference_gives_the_same_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(
        experiment={"protocol": "gossip.reference", "stop_when": None, "duration": 8000},
        network={"nodes": 16},
        faults=FAULTY,
    )
    log = _same_runs(*_both(cfg, tmp_path, monkeypatch))
    # the run exercised what the loop branches on: crashed receivers, corrupt arrivals
    assert {"crash", "recover", "join", "leave", "corrupt"} <= set(log["kind"])


@register("test.hotpath_timers")
class _Timers(Protocol):
    """In-window timers, cancellations, observations of every type, sends to itself."""

    def __init__(self, params: Any, node: int) -> None:
        self.node, self.n = node, 0

    def on_start(self, ctx: Context) -> None:
        ctx.set_timer(1 + self.node % 3, "a")
        self.doomed = ctx.set_timer(5, "never")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        self.n += 1
        ctx.emit("tick", float(self.n), peer=ctx.random_peer())
        ctx.emit("label", f"t{self.n}")
        ctx.emit("vec", [self.n, ctx.rng.randrange(7)])
        if tag == "a":
            ctx.cancel_timer(self.doomed)
            ctx.set_timer(0, "now")  # fires inside the window being handled
        if self.n < 40:
            ctx.set_timer(ctx.rng.randrange(5), "b")
            ctx.send(ctx.random_peer(), ("hi", self.n))

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if msg[1] % 7 == 0:
            ctx.send(src, ("back", msg[1] + 1))
        if msg[1] % 5 == 0:  # numpy ints as a destination and a delay: the same columns
            ctx.send(np.int64(src), ("np", msg[1] + 1))
            ctx.set_timer(np.int64(ctx.rng.randint(0, 9)), "np")
        if msg[1] % 3 == 0:  # every draw of the node's stream
            r = ctx.rng
            items = list(range(6))
            r.shuffle(items)
            ctx.emit("draws", [r.next_u64() >> 40, int(r.random() * 1e6),
                               int(r.uniform(-2, 3) * 1e6), r.choice(items),
                               *r.sample(items, 2), *r.sample(range(50), 3), *items])
        ctx.storage["last"] = src

    def on_crash(self, ctx: Context) -> None:  # all of it discarded with the crash
        ctx.send(ctx.random_peer(), ("last words", self.n))
        ctx.set_timer(3, "after")
        ctx.emit("crashing", 1.0)


@register("test.hotpath_raises")
class _Raises(_Timers):
    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if ctx.now > 30:
            raise ZeroDivisionError("boom")


def _custom(protocol: str) -> ExperimentConfig:
    return validate(
        {
            "experiment": {"name": "t", "protocol": protocol, "seed": 4, "duration": 400},
            "network": {"nodes": 12, "delay": {"dist": "uniform", "low": 3, "high": 9}},
            "faults": {"loss": 0.1, "crashes": [{"node": 2, "at": 100, "recover_at": 200}]},
        },
        "test",
    )


def test_in_window_timers_and_cancellations_give_the_same_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _same_runs(*_both(_custom("test.hotpath_timers"), tmp_path, monkeypatch))
    assert (log["name"] == "vec").any() and (log["kind"] == "timer").sum() > 100
    # (a timer's row carries its tag in msg_type)
    assert (log["name"] == "draws").any() and (log["msg_type"] == "np").any()
    # node 2 crashed: what it did in on_crash is not in the log
    assert (log["kind"] == "crash").any() and not (log["name"] == "crashing").any()


def test_a_failing_handler_gives_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, pure = _both(_custom("test.hotpath_raises"), tmp_path, monkeypatch)
    assert fast.status == pure.status == "failed"
    first = [e.splitlines()[0] for e in (fast.error, pure.error)]
    assert first[0] == first[1] and "message ('hi'" in first[0], first
    assert "ZeroDivisionError: boom" in fast.error


@register("test.hotpath_bad_destination")
class _BadDestination(_Timers):
    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        ctx.send(src, ("fine", 0))
        if ctx.now > 30:
            ctx.send(ctx.n_nodes, ("nowhere", 0))


def test_a_send_to_no_node_gives_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, pure = _both(_custom("test.hotpath_bad_destination"), tmp_path, monkeypatch)
    assert fast.status == pure.status == "failed"
    assert fast.error == pure.error
    assert "destination 12 is not a node id in 0..11" in fast.error


def test_the_compiled_stream_is_node_rng_draw_for_draw() -> None:
    hot = compiled.hotpath()
    assert hot is not None
    for key in (0, 1, 2**64 - 1, 2**70 + 5, -3):
        a, b = NodeRng(key), hot.FastRng(key)
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("next_u64", ()), ("random", ()), ("randrange", (1,)), ("randrange", (7,)),
            ("randrange", (2**40 + 3,)), ("randrange", (2**64 + 9,)), ("randrange", (2**70,)),
            ("randint", (-5, 5)), ("uniform", (1, 2.5)), ("uniform", (-1.0, 0)),
            ("choice", ("abcdef",)), ("sample", (list(range(100)), 7)),
            ("sample", (list(range(10)), 8)), ("sample", (range(3), 0)),
        ]
        for _ in range(50):
            for name, args in calls:
                x, y = getattr(a, name)(*args), getattr(b, name)(*args)
                assert x == y and type(x) is type(y), (key, name, args, x, y)
            items_a, items_b = list(range(9)), list(range(9))
            a.shuffle(items_a)
            b.shuffle(items_b)
            assert items_a == items_b
        assert (a._key, a._ctr) == (b._key, b._ctr)
        again = pickle.loads(pickle.dumps(b))
        assert again.next_u64() == a.next_u64()
    for name, args in [("randrange", (0,)), ("randrange", (-2,)), ("sample", ([1], 2)),
                       ("randrange", (2.5,)), ("choice", ([],))]:
        errors = []
        for r in (NodeRng(9), hot.FastRng(9)):
            with pytest.raises(Exception) as e:
                getattr(r, name)(*args)
            errors.append((type(e.value), str(e.value)))
        assert errors[0] == errors[1], (name, errors)


def _columns(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return (
        np.sort(rng.integers(0, 50, n)).astype(np.int64),
        rng.integers(-(2**62), 2**62, n),
        rng.integers(0, 2**63, n, dtype=np.uint64) | np.uint64(1 << 63),  # kept apart
        rng.integers(0, 100, n).astype(np.int32),
        rng.integers(0, 3, n).astype(np.int8),
        rng.random(n) < 0.5,
        rng.random(n),
        rng.integers(0, 9, (n, 3)),  # a 2-D column (the senders' vector clocks)
    )


def test_pending_returns_what_per_column_slicing_returns() -> None:
    rng = np.random.default_rng(5)
    pool = Pending(8)
    batches, ids = [], 0
    for _ in range(12):
        cols = _columns(rng, int(rng.integers(1, 30)))
        objs = list(range(ids, ids + len(cols[0])))
        ids += len(objs)
        pool.add(cols, objs)
        batches.append((cols, np.array(objs)))
    for end in (0, 7, 8, 25, 26, 60):
        got, objs = pool.take(end)
        # what is due, per batch, per column; rows matched to the pool's by their object
        due = [(tuple(c[cols[0] < end] for c in cols), o[cols[0] < end]) for cols, o in batches]
        batches = [(tuple(c[cols[0] >= end] for c in cols), o[cols[0] >= end]) for cols, o in
                   batches]
        want_ids = np.concatenate([o for _, o in due])
        want = [np.concatenate(cs) for cs in zip(*(c for c, _ in due), strict=True)]
        assert sorted(objs) == sorted(want_ids.tolist())
        if not len(want_ids):  # nothing due: empty int64 columns, as before
            assert all(len(g) == 0 and g.dtype == np.int64 for g in got)
            continue
        at = np.argsort(want_ids)[np.searchsorted(np.sort(want_ids), np.array(objs, dtype=int))]
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w[at])
    assert len(pool) == 0
