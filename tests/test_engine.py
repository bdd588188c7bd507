"""Engine semantics on the local backend: event order, timers, crashes, stop rule, duration,
log levels, determinism, protocol errors, and the columnar path against the per-node one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from raysim.api.protocol import (
    BatchContext,
    BatchEvents,
    BatchProtocol,
    Context,
    Params,
    Protocol,
    register,
)
from raysim.engine.shard import Shard, StepInfo
from raysim.experiments.config import ExperimentConfig, validate
from raysim.experiments.runner import make_spec, run
from raysim.network.router import SEQ_BITS
from raysim.protocols import lookup
from raysim.runtime.backends import coordinate, shard_bounds

from .conftest import canonical, make_config, rows, run_log

# --- helpers -----------------------------------------------------------------------------------


def config(
    protocol: str,
    nodes: int = 10,
    delay: Any = 50,
    duration: int = 1000,
    faults: dict[str, Any] | None = None,
    seed: int = 3,
    **params: Any,
) -> ExperimentConfig:
    """An experiment with one of this module's protocols (no stop rule)."""
    data = {
        "experiment": {"name": "t", "protocol": protocol, "seed": seed, "duration": duration},
        "protocol": params,
        "network": {"nodes": nodes, "delay": delay},
        "faults": faults or {},
    }
    return validate(data, "test")


def run_shard(cfg: ExperimentConfig) -> Shard:
    """Run ``cfg`` on one in-process shard without a log; the shard, for its nodes' storage."""
    spec = make_spec(cfg, "test")
    proto = lookup(cfg.experiment.protocol)
    shard = Shard(spec, 0, shard_bounds(spec.n_nodes, 1, None), None, protocol=proto)

    def submit(end: int, inbox: list[list[Any]]) -> tuple[list[list[Any]], list[StepInfo]]:
        parts, info = shard.step(end, inbox[0])
        return [parts], [info]

    coordinate(spec, 1, submit, lambda infos: infos)
    shard.finish()
    return shard


def runs_row(res_dir: Path, run_id: str) -> pd.Series:
    """A run's row of ``runs.parquet``."""
    table = pd.read_parquet(res_dir / "t" / "runs.parquet")
    hits = table[table["run_id"] == run_id]
    assert len(hits) == 1
    return hits.iloc[0]


# --- event order -------------------------------------------------------------------------------


class Hop(NamedTuple):
    """A message that knows its own msg_id (valid while no node crashes)."""

    mid: int
    reply: bool


class TraceParams(Params):
    """Parameters of :class:`Trace`."""

    period: int = Field(40, ge=1)
    short: int = Field(30, ge=1, description="short timers are set with delay 0..short-1")


@register("test.engine.trace")
class Trace(Protocol):
    """Random traffic and timers; every handler call is appended to ``storage['trace']``.

    Trace entries: ``(now, priority, key)`` with priority 0 lifecycle, 1 message, 2 timer,
    key the msg_id or timer id. Timer tags carry their due time; a timer firing at another
    time is recorded in ``storage['late']``.
    """

    Params: ClassVar[type[TraceParams]] = TraceParams

    def __init__(self, params: TraceParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.sent = 0

    def _timer(self, ctx: Context, delay: int, name: str) -> None:
        tid = ctx.set_timer(delay, (name, ctx.now + delay, ctx.storage["tids"]))
        assert tid == ctx.storage["tids"]
        ctx.storage["tids"] += 1

    def _send(self, ctx: Context, dst: int, reply: bool) -> None:
        ctx.send(dst, Hop((self.node << SEQ_BITS) | self.sent, reply))
        self.sent += 1

    def on_start(self, ctx: Context) -> None:
        ctx.storage.update(trace=[(ctx.now, 0, -1)], late=[], tids=0)
        self._timer(ctx, 1 + ctx.rng.randrange(self.p.period), "round")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        name, due, tid = tag
        ctx.storage["trace"].append((ctx.now, 2, tid))
        if due != ctx.now:
            ctx.storage["late"].append(tag)
        if name == "round":
            self._timer(ctx, self.p.period, "round")
            for _ in range(2):
                self._send(ctx, ctx.random_peer(), False)
            self._timer(ctx, ctx.rng.randrange(self.p.short), "short")
        else:
            self._send(ctx, ctx.random_peer(), False)

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        ctx.storage["trace"].append((ctx.now, 1, msg.mid))
        assert msg.mid >> SEQ_BITS == src
        if not msg.reply:
            self._send(ctx, src, True)
            if ctx.rng.random() < 0.3:
                self._timer(ctx, ctx.rng.randrange(self.p.short), "short")


@pytest.mark.parametrize(
    "delay",
    [
        {"dist": "uniform", "low": 30, "high": 200},  # many short timers inside a window
        {"dist": "uniform", "low": 1, "high": 60},  # lookahead 1
    ],
    ids=["lookahead-30", "lookahead-1"],
)
def test_each_node_handles_its_events_in_the_total_order(delay: dict[str, Any]) -> None:
    """Per node: (time, priority, id) never decreases; every timer fires at its due time."""
    cfg = config(
        "test.engine.trace", nodes=40, delay=delay, duration=800, faults={"duplicate": 0.2}
    )
    shard = run_shard(cfg)
    fired = 0
    for node, store in enumerate(shard.storage):
        trace = store["trace"]
        assert trace == sorted(trace), f"node {node} handled events out of order"
        assert store["late"] == [], f"node {node}: timers fired at the wrong time"
        fired += sum(p == 2 for _, p, _ in trace)
        times = [t for t, _, _ in trace]
        assert max(times) < 800
    assert fired == shard.counts["timers"] > 40 * 800 // 40  # rounds, plus short timers
    assert shard.counts["delivered"] > 1000


class Note(NamedTuple):
    """A scripted message."""

    name: str


@register("test.engine.script")
class Script(Protocol):
    """Node 1 sends node 0 three messages; node 0 sets and cancels timers (lookahead 50)."""

    def on_start(self, ctx: Context) -> None:
        ctx.storage["trace"] = [(ctx.now, "start")]
        if self.node == 1:
            ctx.send(0, Note("m50"))  # arrives at 50
            ctx.set_timer(5, "send55")
            ctx.set_timer(10, "send60")
        elif self.node == 0:
            ctx.storage["never"] = ctx.set_timer(120, "never")  # beyond the window
            ctx.set_timer(130, "x130")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.storage["trace"].append((ctx.now, tag))
        if tag in ("send55", "send60"):
            ctx.send(0, Note("m" + tag[4:]))
        elif tag == "t55":
            ctx.set_timer(2, "t57")
        elif tag == "t60":
            ctx.set_timer(0, "t60b")

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        ctx.storage["trace"].append((ctx.now, msg.name))
        if msg.name == "m50":
            ctx.set_timer(5, "t55")
            ctx.set_timer(0, "t50")
            ctx.set_timer(10, "t60")
            ctx.cancel_timer(ctx.set_timer(7, "cancelled57"))  # inside the window
            ctx.cancel_timer(ctx.storage["never"])  # in a later window
            ctx.cancel_timer(12345)  # unknown: ignored


SCRIPT_NODE0 = [
    (0, "start"),
    (50, "m50"),
    (50, "t50"),  # a delay-0 timer fires after the message that set it
    (55, "m55"),  # a message precedes a timer at the same time
    (55, "t55"),
    (57, "t57"),  # set by an in-window timer, fires before the next message
    (60, "m60"),
    (60, "t60"),
    (60, "t60b"),
    (130, "x130"),
]


def test_short_timers_fire_in_order_with_messages_and_cancel(tmp_path: Path) -> None:
    cfg = config("test.engine.script", nodes=3, delay=50, duration=1000)
    shard = run_shard(cfg)
    assert shard.storage[0]["trace"] == SCRIPT_NODE0
    assert shard.storage[1]["trace"] == [(0, "start"), (5, "send55"), (10, "send60")]
    # The log agrees: timer rows name the tags that fired, at their times.
    _, df = run_log(cfg, tmp_path)
    timers = rows(df, "timer")
    got = list(zip(timers["time"], timers["node"], timers["msg_type"], strict=True))
    want = [(t, 0, tag) for t, tag in SCRIPT_NODE0 if tag.startswith(("t", "x"))]
    want += [(5, 1, "send55"), (10, 1, "send60")]
    assert sorted(got) == sorted(want)
    assert rows(df, "deliver")["time"].tolist() == [50, 55, 60]
    assert len(timers) == sum(1 for _, tag in SCRIPT_NODE0 if tag[0] in "tx") + 2


@register("test.engine.doomed")
class Doomed(Protocol):
    """Node 0 sets timers, then crashes at 50 and recovers at 300 (lookahead 100)."""

    def on_start(self, ctx: Context) -> None:
        ctx.storage.setdefault("trace", []).append((ctx.now, "start"))
        if self.node == 0:
            for d, tag in ((30, "a"), (80, "b"), (150, "c"), (400, "d")):
                ctx.set_timer(d, tag)

    def on_crash(self, ctx: Context) -> None:
        ctx.storage["trace"].append((ctx.now, "crash"))
        ctx.set_timer(10, "from-crash")  # discarded with the node
        ctx.send(1, Note("last words"))  # discarded
        ctx.emit("dying")  # discarded

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.storage["trace"].append((ctx.now, tag))

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        ctx.storage["trace"].append((ctx.now, msg.name))


def test_timers_of_a_crashed_node_never_fire(tmp_path: Path) -> None:
    faults = {"crashes": [{"node": 0, "at": 50, "recover_at": 300}]}
    cfg = config("test.engine.doomed", nodes=3, delay=100, duration=2000, faults=faults)
    shard = run_shard(cfg)
    # b (80, same window as the crash), c (150, while down) and d (400, after recovery, but
    # set by the previous incarnation) never fire; the new incarnation's timers do.
    assert shard.storage[0]["trace"] == [
        (0, "start"),
        (30, "a"),
        (50, "crash"),
        (300, "start"),
        (330, "a"),
        (380, "b"),
        (450, "c"),
        (700, "d"),
    ]
    assert shard.storage[1]["trace"] == [(0, "start")]
    _, df = run_log(cfg, tmp_path)
    assert rows(df, "send").empty and rows(df, "obs").empty
    assert rows(df, "timer")["time"].tolist() == [30, 330, 380, 450, 700]
    assert rows(df, "crash")["time"].tolist() == [50]
    assert rows(df, "recover")["time"].tolist() == [300]


@register("test.engine.cancel-ahead")
class CancelAhead(Protocol):
    """Node 0 cancels timer id 3 before it exists, then sets timers with ids 0..5."""

    def on_start(self, ctx: Context) -> None:
        if self.node == 0:
            ctx.cancel_timer(3)
            for i in range(6):
                assert ctx.set_timer(100 + i, f"t{i}") == i


def test_cancelling_an_unknown_timer_id_does_nothing(tmp_path: Path) -> None:
    _, df = run_log(config("test.engine.cancel-ahead", nodes=2), tmp_path)
    assert rows(df, "timer")["msg_type"].tolist() == [f"t{i}" for i in range(6)]


# --- stop rule, duration -----------------------------------------------------------------------


def _alive_at(df: pd.DataFrame, t: int, nodes: int) -> set[int]:
    """Nodes alive at time t (after lifecycle events at t)."""
    life = df[df["kind"].isin(["crash", "recover"]) & (df["time"] <= t)]
    last = life.groupby("node")["kind"].last()
    return set(range(nodes)) - set(last[last == "crash"].index)


@pytest.mark.parametrize(
    "crashes",
    [
        [],
        [{"nodes": "50-55", "at": 0}],  # crash-stop at once: never informed
        [{"nodes": "40-47", "at": 500, "recover_at": 1500}],
    ],
    ids=["no-crash", "crash-stop", "crash-recover"],
)
@pytest.mark.parametrize("protocol", ["gossip.push_pull", "gossip.reference"])
def test_stop_when_ends_the_run_once_every_live_node_emitted(
    tmp_path: Path, crashes: list[dict[str, Any]], protocol: str
) -> None:
    """Columnar (gossip.push_pull) and per-node (gossip.reference) protocols alike."""
    cfg = make_config(experiment={"protocol": protocol}, faults={"crashes": crashes, "loss": 0.1})
    n, lookahead = cfg.network.nodes, 20
    res, df = run_log(cfg, tmp_path / "stop")
    informed = rows(df, "obs", "informed")
    assert informed["node"].is_unique
    end = res.row["end_time"]
    assert end < cfg.experiment.duration_ticks
    assert end % lookahead == 0
    assert df["time"].max() < end
    assert _alive_at(df, end, n) <= set(informed["node"])
    # One window earlier the rule did not hold yet.
    before = set(informed.loc[informed["time"] < end - lookahead, "node"])
    assert not _alive_at(df, end - lookahead, n) <= before
    assert res.row["informed_nodes"] == len(informed)
    assert res.row["informed_time"] == informed["time"].max()
    if crashes and "recover_at" not in crashes[0]:
        assert not set(informed["node"]) & set(range(50, 56))
    # The stop rule only truncates: the same run without it has the same prefix.
    longer = cfg.model_copy(
        update={
            "experiment": cfg.experiment.model_copy(
                update={"stop_when": None, "duration": end + 3000}
            )
        }
    )
    _, full = run_log(longer, tmp_path / "full")
    assert full["time"].max() >= end
    pd.testing.assert_frame_equal(full[full["time"] < end].reset_index(drop=True), df)


@register("test.engine.last-words")
class LastWords(Protocol):
    """Emits ``done`` only while crashing (node 1) or at 700 (node 0)."""

    def on_start(self, ctx: Context) -> None:
        if self.node == 0:
            ctx.set_timer(700, "finish")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        ctx.emit("done")

    def on_crash(self, ctx: Context) -> None:
        ctx.emit("done")  # discarded, like everything a crashing node does


def test_an_observation_discarded_at_crash_does_not_count_for_the_stop_rule(
    tmp_path: Path,
) -> None:
    cfg = config(
        "test.engine.last-words",
        nodes=2,
        duration=5000,
        faults={"crashes": [{"node": 1, "at": 500, "recover_at": 600}]},
    )
    cfg = cfg.model_copy(
        update={"experiment": cfg.experiment.model_copy(update={"stop_when": "done"})}
    )
    res, df = run_log(cfg, tmp_path)
    assert rows(df, "obs", "done")["node"].tolist() == [0]
    assert res.row["done_nodes"] == 1
    assert res.row["end_time"] == 5000  # node 1 is up from 600 on and never emits "done"


def test_duration_bounds_the_run(tmp_path: Path) -> None:
    cfg = make_config(
        experiment={"protocol": "gossip.average.reference", "stop_when": None, "duration": 3000},
        protocol={"period": 200},
        network={"nodes": 30},
    )
    res, df = run_log(cfg, tmp_path)
    assert res.row["end_time"] == 3000
    assert df["time"].max() < 3000
    # Rounds ran until the end: every node had a timer in the last period.
    late = rows(df, "timer")
    assert set(late.loc[late["time"] >= 2800, "node"]) == set(range(30))
    # Messages still in flight at the end were sent, never delivered.
    sent = rows(df, "send")
    in_flight = sent["time"] + sent["value"] >= 3000
    assert in_flight.any()
    assert not set(sent.loc[in_flight, "msg_id"]) & set(rows(df, "deliver")["msg_id"])


# --- log levels, determinism -------------------------------------------------------------------

LEVEL_FAULTS = {"loss": 0.1, "crashes": [{"nodes": "5-9", "at": 1500, "recover_at": 4000}]}
COUNTS = (
    "sent",
    "lost",
    "delivered",
    "timers",
    "observations",
    "dropped_crashed",
    "end_time",
    "informed_nodes",
    "informed_time",
)


def test_log_levels(tmp_path: Path) -> None:
    results = {}
    for level in ("all", "observations", "none"):
        cfg = make_config(faults=LEVEL_FAULTS, log={"level": level})
        results[level] = run(cfg, tmp_path / level)
        assert results[level].status == "ok", results[level].error
    full_dir, obs_dir = results["all"].events_dir, results["observations"].events_dir
    assert full_dir is not None and obs_dir is not None
    full, obs = canonical(full_dir), canonical(obs_dir)
    kept = {"start", "obs", "crash", "recover"}
    assert set(obs["kind"]) == kept
    assert {"send", "deliver", "timer", "drop"} <= set(full["kind"])
    pd.testing.assert_frame_equal(obs, full[full["kind"].isin(kept)].reset_index(drop=True))
    # "none": no event files at all, but the counts are in runs.parquet.
    none = results["none"]
    assert none.events_dir is None
    assert not list((tmp_path / "none" / "t" / "events").iterdir())
    row = runs_row(tmp_path / "none", none.run_id)
    for level, res in results.items():
        for k in COUNTS:
            assert row[k] == res.row[k], (level, k)
    assert row["events_logged"] == 0
    assert results["all"].row["events_logged"] == len(full)
    assert results["observations"].row["events_logged"] == len(obs)
    assert row["delivered"] == len(rows(full, "deliver"))
    assert row["observations"] == len(rows(full, "obs"))


@pytest.mark.parametrize("protocol", ["gossip.push_pull", "gossip.reference"])
def test_same_config_same_log(tmp_path: Path, protocol: str) -> None:
    faults = {
        "loss": 0.1,
        "duplicate": 0.1,
        "corrupt": 0.05,
        "partitions": [{"start": 1000, "end": 3000, "a": "0-20"}],
        "crashes": [{"fraction": 0.1, "at": 500, "recover_at": 2500}],
    }
    exp = {"protocol": protocol}
    cfg = make_config(experiment=exp, faults=faults, network={"jitter": 7})
    _, a = run_log(cfg, tmp_path / "a")
    _, again = run_log(cfg, tmp_path / "a")  # a rerun replaces the run's files and row
    pd.testing.assert_frame_equal(a, again)
    assert len(pd.read_parquet(tmp_path / "a" / "t" / "runs.parquet")) == 1
    assert {"duplicate", "corrupt", "drop", "crash", "recover"} <= set(a["kind"])
    other = make_config(experiment={**exp, "seed": 4}, faults=faults, network={"jitter": 7})
    _, c = run_log(other, tmp_path / "c")
    assert not a.equals(c)


# --- protocol errors ---------------------------------------------------------------------------


class BoomParams(Params):
    """Where :class:`Boom` fails."""

    where: Literal["start", "message", "timer", "send", "negative-timer", "none"] = "none"
    node: int = 2
    bad_dst: int = -1


class Ball(NamedTuple):
    """Passed around a ring."""

    hops: int


@register("test.engine.boom")
class Boom(Protocol):
    """Every node ticks at 100 + 10·node (after the first window) and sends a Ball to its
    successor (arriving 50 later); fails on demand."""

    Params: ClassVar[type[BoomParams]] = BoomParams

    def __init__(self, params: BoomParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params

    def _here(self, where: str) -> bool:
        return self.p.where == where and self.node == self.p.node

    def on_start(self, ctx: Context) -> None:
        if self._here("start"):
            raise RuntimeError("boom at start")
        ctx.set_timer(100 + 10 * self.node, "tick")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if self._here("timer"):
            raise RuntimeError("boom in timer")
        if self._here("send"):
            ctx.send(self.p.bad_dst, Ball(0))
        if self._here("negative-timer"):
            ctx.set_timer(-1, "bad")
        ctx.send((self.node + 1) % ctx.n_nodes, Ball(0))

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if self._here("message"):
            raise RuntimeError("boom in message")


@pytest.mark.parametrize(
    ("where", "time", "event", "error"),
    [
        ("start", 0, "while handling start", "RuntimeError: boom at start"),
        ("timer", 120, "while handling timer 'tick'", "RuntimeError: boom in timer"),
        (
            "message",
            160,
            "while handling message Ball(hops=0) from node 1",
            "RuntimeError: boom in message",
        ),
        ("negative-timer", 120, "while handling timer 'tick'", "timer delay must be >= 0"),
    ],
)
def test_a_failing_handler_fails_the_run_with_node_time_event_and_traceback(
    tmp_path: Path, where: str, time: int, event: str, error: str
) -> None:
    cfg = config("test.engine.boom", nodes=5, delay=50, where=where, node=2)
    res = run(cfg, tmp_path)
    assert res.status == "failed"
    assert res.events_dir is None
    assert res.error is not None
    first = res.error.splitlines()[0]
    assert f"at node 2, time {time}, {event}" in first
    row = runs_row(tmp_path, res.run_id)
    assert row["status"] == "failed"
    assert row["error"] == first
    assert error in row["traceback"]
    assert "Traceback (most recent call last)" in row["traceback"]
    assert f"on_{where.split('-')[-1]}" in row["traceback"]
    # Nothing half-written: no event directory for the run, no staging leftovers.
    assert not list((tmp_path / "t" / "events").iterdir())


@pytest.mark.parametrize("bad_dst", [5, -1, 10**12])
def test_a_send_to_a_missing_node_is_a_protocol_error(tmp_path: Path, bad_dst: int) -> None:
    cfg = config("test.engine.boom", nodes=5, delay=50, where="send", node=2, bad_dst=bad_dst)
    res = run(cfg, tmp_path)
    assert res.status == "failed"
    assert res.error is not None
    first = res.error.splitlines()[0]
    assert f"at node 2, time 120, while handling send to node {bad_dst}" in first
    assert f"destination {bad_dst} is not a node id in 0..4" in res.error
    assert runs_row(tmp_path, res.run_id)["status"] == "failed"


@register("test.engine.late-boom")
class LateBoom(Protocol):
    """Node 0 arms an in-window timer that fails; node 1 has an innocent timer after it."""

    def on_start(self, ctx: Context) -> None:
        if self.node == 0:
            ctx.set_timer(60, "arm")
        elif self.node == 1:
            ctx.set_timer(70, "innocent")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == "arm":
            ctx.set_timer(3, "bad")
        elif tag == "bad":
            raise RuntimeError("boom in an in-window timer")


def test_a_failing_in_window_timer_is_named_correctly(tmp_path: Path) -> None:
    res = run(config("test.engine.late-boom", nodes=3, delay=50), tmp_path)
    assert res.status == "failed" and res.error is not None
    first = res.error.splitlines()[0]
    assert "at node 0, time 63" in first
    assert "innocent" not in first


class BatchBoomParams(Params):
    """When :class:`BatchBoom` fails."""

    at: int = 40


@register("test.engine.batch-boom")
class BatchBoom(BatchProtocol):
    """A columnar protocol whose timers fail at ``at`` for nodes 3 and up."""

    Params: ClassVar[type[BatchBoomParams]] = BatchBoomParams

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        ctx.set_timer(ev.node, ev.time + 10 * (ev.node + 1), "tick")

    def on_timer(self, ctx: BatchContext, ev: BatchEvents) -> None:
        if (ev.time >= self.params.at).any():
            raise ValueError("columnar boom")


def test_a_failing_batch_handler_fails_the_run(tmp_path: Path) -> None:
    res = run(config("test.engine.batch-boom", nodes=6, delay=5), tmp_path)
    assert res.status == "failed" and res.error is not None
    first = res.error.splitlines()[0]
    assert "at node 3, time 40" in first and "timers" in first
    assert "ValueError: columnar boom" in runs_row(tmp_path, res.run_id)["traceback"]


# --- columnar vs per-node ------------------------------------------------------------------


class Setting(NamedTuple):
    """A network and protocol setting for the columnar/per-node comparison."""

    nodes: int
    delay: dict[str, Any]
    jitter: int
    duration: int
    protocol: dict[str, Any]


SETTINGS = {
    # lookahead 1: a window per tick, deliveries and timers interleave finely
    "lookahead-1": Setting(40, {"dist": "uniform", "low": 1, "high": 25}, 2, 400, {"period": 30}),
    # lookahead 40 > period 15: several rounds, timers set and fired inside each window
    "in-window-timers": Setting(
        100, {"dist": "uniform", "low": 40, "high": 90}, 0, 700, {"period": 15}
    ),
    # lock-step rounds: many events at one node and one time, ordered by the tie-breakers
    "lockstep": Setting(
        80,
        {"dist": "constant", "value": 10},
        0,
        800,
        {"period": 10, "phase": "lockstep", "init": "peak"},
    ),
}


def harsh_faults(duration: int) -> dict[str, Any]:
    """Loss, duplication, corruption, a fifth of the nodes crashing and recovering, and four
    crash-stops, at times scaled to the run's duration."""
    return {
        "loss": 0.1,
        "duplicate": 0.2,
        "corrupt": 0.1,
        "crashes": [
            {"fraction": 0.2, "at": duration * 15 // 100, "recover_at": duration * 42 // 100},
            {"nodes": "3-6", "at": duration // 3},
        ],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_columnar_averaging_equals_the_per_node_reference(
    tmp_path: Path, setting: str, seed: int
) -> None:
    s = SETTINGS[setting]
    logs = []
    for proto in ("gossip.average", "gossip.average.reference"):
        cfg = make_config(
            experiment={"protocol": proto, "stop_when": None, "duration": s.duration, "seed": seed},
            protocol=s.protocol,
            network={"nodes": s.nodes, "delay": s.delay, "jitter": s.jitter},
            faults=harsh_faults(s.duration),
        )
        _, df = run_log(cfg, tmp_path / proto)
        logs.append(df)
    columnar, reference = logs
    kinds = set(reference["kind"])
    assert {"deliver", "duplicate", "corrupt", "drop", "crash", "recover", "timer", "obs"} <= kinds
    assert (rows(reference, "drop", "crashed")).shape[0] > 0
    pd.testing.assert_frame_equal(columnar, reference)
    # The values really are averaged (not, say, constant): they converge toward a mean.
    vals = rows(reference, "obs", "value")
    assert np.isfinite(vals["value"]).all()
    first, last = vals["time"].min(), vals["time"].max()
    period = s.protocol["period"]
    spread_first = vals.loc[vals["time"] <= first + period, "value"].std()
    spread_last = vals.loc[vals["time"] > last - period, "value"].std()
    assert spread_last < spread_first


def test_cycle_collections_back_off_while_they_find_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Shard._collect``: a collection that frees nothing doubles the wait for the next
    (up to ``GC_MAX_WINDOWS``); one that frees something brings it back to ``GC_WINDOWS``."""
    from types import SimpleNamespace

    from raysim.engine import shard as shard_mod

    found = iter([0, 0, 0, 0, 0, 0, 7, 0])
    monkeypatch.setattr(shard_mod.gc, "collect", lambda: next(found))
    s: Any = SimpleNamespace(_gc_every=shard_mod.GC_WINDOWS, _gc_next=0, _windows=0)
    waits = []
    for _ in range(8):
        s._windows = s._gc_next
        Shard._collect(s)
        waits.append(s._gc_every)
        assert s._gc_next == s._windows + s._gc_every
    assert waits == [512, 1024, 2048, 4096, 4096, 4096, 256, 512]
    assert shard_mod.GC_MAX_WINDOWS == 4096
