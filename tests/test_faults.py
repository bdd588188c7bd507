"""The fault model: router decisions, delay distributions, duplication, corruption,
partitions and crashes, checked on the router alone and on whole (local) runs.

Statistical checks use bounds of five standard deviations, so a correct implementation
fails them with probability below 1e-6 each; the inputs are fixed, so they never flake.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter

from raysim.api.protocol import Context, Params, Protocol, register
from raysim.experiments.config import ExperimentConfig
from raysim.log.eventlog import EventLog
from raysim.network.faults import Delay, Faults, ParetoDelay
from raysim.network.router import SEQ_BITS, Messages, Router, concat

from .conftest import make_config, rows, run_log

# --- a tiny protocol for whole-run tests ----------------------------------------------------


class Ping(NamedTuple):
    """A message whose ``tag`` equals its msg_id as long as the sender never crashed."""

    tag: int


class ChatterParams(Params):
    """Parameters of :class:`Chatter`."""

    period: int = Field(100, ge=1, description="ticks between rounds")
    rounds: int = Field(10, ge=1, description="rounds per incarnation")
    fanout: int = Field(0, ge=0, description="random peers per round; 0 = every other node")
    long_timer: int = Field(0, ge=0, description="if > 0, a 'long' timer set at start")


@register("test.faults.chatter")
class Chatter(Protocol):
    """Sends a Ping to every other node (or ``fanout`` random ones) each round.

    Observations: ``boot`` (value: how often the node started before, from stable storage),
    ``fresh`` at recovery (value: volatile counters of the new instance, 0 if reset) and
    ``got`` per message handled (value: the Ping's tag).
    """

    Params: ClassVar[type[ChatterParams]] = ChatterParams

    def __init__(self, params: ChatterParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.sent = 0
        self.received = 0
        self.rounds_done = 0

    def on_start(self, ctx: Context) -> None:
        boots = ctx.storage.get("boots", 0)
        ctx.storage["boots"] = boots + 1
        ctx.emit("boot", boots)
        if self.p.long_timer:
            ctx.set_timer(self.p.long_timer, "long")
        self._round(ctx)

    def on_recover(self, ctx: Context) -> None:
        ctx.emit("fresh", self.sent + self.received + self.rounds_done)
        self.on_start(ctx)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if tag == "round":
            self._round(ctx)

    def _round(self, ctx: Context) -> None:
        self.rounds_done += 1
        if self.p.fanout:
            targets = [ctx.random_peer() for _ in range(self.p.fanout)]
        else:
            targets = [d for d in range(ctx.n_nodes) if d != self.node]
        for d in targets:
            ctx.send(d, Ping((self.node << SEQ_BITS) | self.sent))
            self.sent += 1
        if self.rounds_done < self.p.rounds:
            ctx.set_timer(self.p.period, "round")

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self.received += 1
        ctx.emit("got", float(msg.tag))


def chatter_config(
    nodes: int = 20,
    delay: Any = 10,
    faults: dict[str, Any] | None = None,
    duration: int = 2000,
    seed: int = 3,
    **protocol: Any,
) -> ExperimentConfig:
    """A chatter experiment (no stop rule)."""
    return make_config(
        experiment={
            "protocol": "test.faults.chatter",
            "stop_when": None,
            "duration": duration,
            "seed": seed,
        },
        protocol={"period": 100, "rounds": 10, **protocol},
        network={"nodes": nodes, "delay": delay},
        faults=faults or {},
    )


def send_table(df: pd.DataFrame) -> pd.DataFrame:
    """Send rows indexed by msg_id: time, src (node), dst (peer), delay (value)."""
    s = rows(df, "send")
    assert s["msg_id"].is_unique
    return s.set_index("msg_id")[["time", "node", "peer", "value"]]


def binomial_ok(k: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Whether ``k`` successes out of ``n`` is within ``sigmas`` std devs of Binomial(n, p)."""
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


# --- router unit tests ------------------------------------------------------------------------

N_NODES = 1000


def raw_batch(n: int, seed: int = 0, n_nodes: int = N_NODES) -> Messages:
    """``n`` raw sends with distinct ids between random distinct nodes at random times."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n_nodes, n).astype(np.int64)
    dst = (src + rng.integers(1, n_nodes, n)) % n_nodes
    time = rng.integers(0, 5000, n).astype(np.int64)
    msg_id = (src << SEQ_BITS) | np.arange(n, dtype=np.int64)
    return Messages(
        time,
        src,
        dst,
        msg_id,
        np.zeros(n, dtype=np.int32),
        ["Ping"],
        list(range(n)),
        np.zeros(n, dtype=np.int8),
        np.zeros(n, dtype=bool),
    )


def make_router(
    faults: dict[str, Any] | None = None,
    delay: dict[str, Any] | None = None,
    jitter: int = 0,
    seed: int = 11,
    log: EventLog | None = None,
    n_nodes: int = N_NODES,
) -> Router:
    """A one-shard router over ``n_nodes`` nodes (no log unless one is given)."""
    return Router(
        seed,
        n_nodes,
        TypeAdapter(Delay).validate_python(delay or {"dist": "constant", "value": 1}),
        jitter,
        Faults.model_validate(faults or {}),
        np.array([0, n_nodes], dtype=np.int64),
        log if log is not None else EventLog(None, "all"),
    )


def fates(raw: Messages, deliv: Messages) -> dict[tuple[int, int], tuple[int, bool, int, int]]:
    """Per delivered copy (msg_id, copy): its delay, corrupt flag, destination and payload."""
    sent_at = dict(zip(raw.msg_id.tolist(), raw.time.tolist(), strict=True))
    out = {}
    for mid, cp, t, cor, dst, pl in zip(
        deliv.msg_id.tolist(),
        deliv.copy.tolist(),
        deliv.time.tolist(),
        deliv.corrupt.tolist(),
        deliv.dst.tolist(),
        deliv.payload,
        strict=True,
    ):
        key = (mid, cp)
        assert key not in out, f"copy {key} delivered twice"
        out[key] = (t - sent_at[mid], cor, dst, pl)
    return out


def delays_of(router: Router, raw: Messages) -> np.ndarray:
    """The delay of every copy-0 delivery of ``raw`` (no loss configured)."""
    deliv = router.route(raw)
    first = deliv.copy == 0
    assert first.sum() == len(raw)
    return deliv.time[first] - raw.time


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7])
def test_loss_rate_is_binomial(p: float) -> None:
    raw = raw_batch(50_000, seed=1)
    router = make_router({"loss": p})
    deliv = router.route(raw)
    lost = router.stats.lost
    assert binomial_ok(lost, len(raw), p), (lost, len(raw) * p)
    assert len(deliv) == len(raw) - lost
    assert router.stats.sent == len(raw)
    assert set(deliv.msg_id.tolist()) <= set(raw.msg_id.tolist())


def test_no_faults_delivers_every_message_once_intact() -> None:
    raw = raw_batch(5000, seed=2)
    deliv = make_router(delay={"dist": "constant", "value": 7}).route(raw)
    assert len(deliv) == len(raw)
    assert not deliv.corrupt.any()
    assert (deliv.copy == 0).all()
    np.testing.assert_array_equal(deliv.msg_id, raw.msg_id)
    np.testing.assert_array_equal(deliv.dst, raw.dst)
    np.testing.assert_array_equal(deliv.time, raw.time + 7)
    assert deliv.payload == raw.payload


FAULTY = {
    "loss": 0.2,
    "duplicate": 0.3,
    "corrupt": 0.25,
    "partitions": [{"start": 1000, "end": 2000, "a": "0-299"}],
}
FAULTY_DELAY = {"dist": "lognormal", "median": 40.0, "sigma": 0.8, "min": 5}


def test_decisions_depend_only_on_message_identity() -> None:
    """Whole batch, two halves, shuffled, reversed in small pieces: the same fate per copy."""
    raw = raw_batch(8000, seed=3)
    whole = fates(raw, make_router(FAULTY, FAULTY_DELAY, jitter=4).route(raw))

    r = make_router(FAULTY, FAULTY_DELAY, jitter=4)
    half = len(raw) // 2
    parts = [r.route(raw.select(np.arange(half))), r.route(raw.select(np.arange(half, len(raw))))]
    assert fates(raw, concat(parts)) == whole

    perm = np.random.default_rng(9).permutation(len(raw))
    assert fates(raw, make_router(FAULTY, FAULTY_DELAY, jitter=4).route(raw.select(perm))) == whole

    r = make_router(FAULTY, FAULTY_DELAY, jitter=4)
    pieces = [r.route(raw.select(idx)) for idx in np.array_split(np.arange(len(raw))[::-1], 37)]
    assert fates(raw, concat(pieces)) == whole

    # The fates are not trivial: every kind of decision was taken somewhere.
    copies = Counter(mid for mid, _ in whole)
    assert 0 < len(copies) < len(raw)  # some lost or partitioned
    assert 2 in copies.values()  # some duplicated
    corrupt = [c for _, c, _, _ in whole.values()]
    assert any(corrupt) and not all(corrupt)
    assert len({d for d, _, _, _ in whole.values()}) > 20


def test_decisions_ignore_send_time_and_payload_but_not_the_seed() -> None:
    """Outside partitions, moving a message in time or changing its payload keeps its fate."""
    faults = {k: v for k, v in FAULTY.items() if k != "partitions"}
    raw = raw_batch(4000, seed=4)
    base = fates(raw, make_router(faults, FAULTY_DELAY, jitter=4).route(raw))
    moved = raw.select(np.arange(len(raw)))
    moved.time = moved.time * 3 + 12345
    moved.payload = [-p for p in raw.payload]
    again = fates(moved, make_router(faults, FAULTY_DELAY, jitter=4).route(moved))
    assert {k: v[:3] for k, v in again.items()} == {k: v[:3] for k, v in base.items()}
    other = fates(raw, make_router(faults, FAULTY_DELAY, jitter=4, seed=12).route(raw))
    assert other.keys() != base.keys()
    shared = base.keys() & other.keys()
    assert sum(base[k][0] != other[k][0] for k in shared) > len(shared) // 2


def test_loss_and_duplication_are_independent_of_delay_stream() -> None:
    """Changing the delay model keeps every loss, duplication and corruption decision."""
    raw = raw_batch(4000, seed=5)
    faults = {"loss": 0.3, "duplicate": 0.3, "corrupt": 0.3}
    a = fates(raw, make_router(faults, {"dist": "constant", "value": 3}).route(raw))
    b = fates(raw, make_router(faults, {"dist": "uniform", "low": 10, "high": 90}).route(raw))
    assert a.keys() == b.keys()
    assert all(a[k][1] == b[k][1] for k in a)


UNIFORM = {"dist": "uniform", "low": 3, "high": 9}


@pytest.mark.parametrize("delay", [UNIFORM, {"dist": "lognormal", "median": 40.0, "sigma": 0.8}])
def test_clean_path_delivers_and_logs_what_the_general_path_does(
    tmp_path: Path, delay: dict[str, Any]
) -> None:
    """With no loss, duplicates, corruption nor partitions the router takes a shortcut
    (``Router.clean``): the same deliveries and the same log rows as the general path."""
    raw = raw_batch(3000, seed=5)
    out = []
    for clean in (True, False):
        log = EventLog(tmp_path / f"{clean}.parquet", "all")
        router = make_router(delay=delay, jitter=3, log=log)
        assert router.clean
        router.clean = clean  # False: the general path, every decision drawn and masked
        deliv = router.route(raw)
        log.close()
        out.append((deliv, pd.read_parquet(tmp_path / f"{clean}.parquet"), router.stats))
    (a, log_a, st_a), (b, log_b, st_b) = out
    for col in ("time", "src", "dst", "msg_id", "type_idx", "copy", "corrupt"):
        got, want = getattr(a, col), getattr(b, col)
        assert got.dtype == want.dtype, col
        np.testing.assert_array_equal(got, want, err_msg=col)
    assert a.payload == b.payload
    pd.testing.assert_frame_equal(log_a, log_b)
    assert st_a == st_b and st_a.sent == len(raw)


@pytest.mark.parametrize(
    "faults",
    [{"loss": 0.1}, {"duplicate": 0.1}, {"corrupt": 0.1}, {"partitions": [{"a": "0-9"}]}],
)
def test_any_fault_takes_the_general_path(faults: dict[str, Any]) -> None:
    assert not make_router(faults).clean


def test_constant_delay_is_exact() -> None:
    d = delays_of(make_router(delay={"dist": "constant", "value": 17}), raw_batch(3000))
    assert (d == 17).all()


def test_uniform_delay_is_uniform_on_low_high() -> None:
    n = 40_000
    d = delays_of(make_router(delay=UNIFORM), raw_batch(n))
    assert d.min() >= 3 and d.max() <= 9
    counts = np.bincount(d, minlength=10)[3:10]
    for c in counts:  # each of the 7 values with probability 1/7
        assert binomial_ok(int(c), n, 1 / 7), counts


def test_exponential_delay_has_floor_and_mean() -> None:
    n = 40_000
    d = delays_of(make_router(delay={"dist": "exponential", "mean": 20.0, "min": 4}), raw_batch(n))
    assert d.min() == 4  # min + rint(Exp): the floor is reached (rint of small draws is 0)
    # P(rint(X) = 0) = P(X < 0.5) = 1 - exp(-0.5 / 20)
    assert binomial_ok(int((d == 4).sum()), n, 1 - math.exp(-0.5 / 20))
    assert abs(d.mean() - 24.0) < 5 * 20 / math.sqrt(n) + 0.05


def test_lognormal_delay_has_floor_and_median() -> None:
    n = 40_000
    spec = {"dist": "lognormal", "median": 50.0, "sigma": 1.0, "min": 10}
    d = delays_of(make_router(delay=spec), raw_batch(n))
    assert d.min() >= 10
    # P(delay == min) = P(rint(50 e^Z) <= 10) = P(50 e^Z < 10.5) = Phi(ln(0.21))
    p_floor = 0.5 * (1 + math.erf(math.log(10.5 / 50) / math.sqrt(2)))
    assert binomial_ok(int((d == 10).sum()), n, p_floor)
    assert binomial_ok(int((d <= 50).sum()), n, 0.5)  # the median is 50 (rint keeps it)


def test_pareto_delay_has_floor_and_cap() -> None:
    n = 40_000
    spec = {"dist": "pareto", "alpha": 1.2, "scale": 8, "cap": 60}
    d = delays_of(make_router(delay=spec), raw_batch(n))
    assert d.min() == 8 and d.max() == 60
    # floor(8 (1-u)^(-1/a)) >= 60  iff  1-u <= (8/60)^a
    assert binomial_ok(int((d == 60).sum()), n, (8 / 60) ** 1.2)
    assert binomial_ok(int((d < 16).sum()), n, 1 - 0.5**1.2)  # P(X < 2 scale)


def test_uncapped_pareto_is_heavy_tailed_but_finite() -> None:
    spec = {"dist": "pareto", "alpha": 0.5, "scale": 2}
    d = delays_of(make_router(delay=spec), raw_batch(20_000))
    assert d.min() >= 2
    assert d.max() > 10**6  # alpha 0.5: P(X > 10^6) = (2/10^6)^0.5 ~ 1.4e-3 per message
    assert d.max() <= 2**53


def test_jitter_adds_zero_to_jitter_uniformly() -> None:
    n = 20_000
    d = delays_of(make_router(delay={"dist": "constant", "value": 5}, jitter=3), raw_batch(n))
    counts = np.bincount(d - 5, minlength=4)
    assert len(counts) == 4, "jitter went beyond 3"
    for c in counts:
        assert binomial_ok(int(c), n, 0.25), counts


def test_jitter_zero_changes_nothing() -> None:
    raw = raw_batch(3000)
    a = delays_of(make_router(delay=UNIFORM), raw)
    b = delays_of(make_router(delay=UNIFORM, jitter=0), raw)
    np.testing.assert_array_equal(a, b)


SANE_DELAYS = st.one_of(
    st.builds(lambda v: {"dist": "constant", "value": v}, st.integers(1, 10**6)),
    st.integers(1, 10**6).flatmap(
        lambda lo: st.builds(
            lambda hi: {"dist": "uniform", "low": lo, "high": hi}, st.integers(lo, lo + 10**6)
        )
    ),
    st.builds(
        lambda m, lo: {"dist": "exponential", "mean": m, "min": lo},
        st.floats(0.01, 1e9),
        st.integers(1, 1000),
    ),
    st.builds(
        lambda med, s, lo: {"dist": "lognormal", "median": med, "sigma": s, "min": lo},
        st.floats(0.01, 1e6),
        st.floats(0.01, 2.0),
        st.integers(1, 1000),
    ),
    st.integers(1, 1000).flatmap(
        lambda sc: st.builds(
            lambda a, cap: {"dist": "pareto", "alpha": a, "scale": sc, "cap": cap},
            st.floats(0.05, 5.0),
            st.one_of(st.none(), st.integers(sc, 10**9)),
        )
    ),
)
EDGE_U = np.array([0.0, 1e-300, 0.25, 0.5, 0.75, 1 - 1e-9, 1 - 2**-53])


@settings(max_examples=150, deadline=None)
@given(spec=SANE_DELAYS)
def test_every_delay_respects_the_lookahead(spec: dict[str, Any]) -> None:
    """No sample, even at the extreme quantiles, is below ``lower_bound`` (the lookahead)."""
    delay = TypeAdapter(Delay).validate_python(spec)
    u, u2 = np.meshgrid(EDGE_U, EDGE_U)
    d = delay.sample(u.ravel(), u2.ravel())
    assert d.dtype == np.int64
    assert (d >= delay.lower_bound).all(), (spec, d.min())


def test_pareto_cap_below_scale_cannot_break_the_lookahead() -> None:
    """A cap below the scale is refused; a cap equal to it keeps every delay at the bound."""
    with pytest.raises(ValueError, match="cap"):
        ParetoDelay(dist="pareto", alpha=1.5, scale=10, cap=5)
    delay = ParetoDelay(dist="pareto", alpha=1.5, scale=10, cap=10)
    d = delay.sample(np.array([0.0, 0.5, 0.99]), np.zeros(3))
    assert (d >= delay.lower_bound).all(), (d, delay.lower_bound)
    assert (d == 10).all()


def test_lognormal_extreme_tail_does_not_overflow() -> None:
    """A valid (if wide) lognormal must not produce negative delays in its far tail."""
    delay = TypeAdapter(Delay).validate_python(
        {"dist": "lognormal", "median": 100.0, "sigma": 10.0}
    )
    with np.errstate(invalid="ignore"):
        d = delay.sample(np.array([0.999999]), np.zeros(1))
    assert (d >= delay.lower_bound).all(), d


def test_duplicate_makes_a_second_copy_with_the_same_identity(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "router.parquet", "all")
    raw = raw_batch(20_000, seed=6)
    router = make_router({"duplicate": 0.25}, UNIFORM, log=log)
    deliv = router.route(raw)
    log.close()
    second = deliv.copy == 1
    n_dup = int(second.sum())
    assert router.stats.duplicated == n_dup
    assert binomial_ok(n_dup, len(raw), 0.25)
    np.testing.assert_array_equal(deliv.msg_id[~second], raw.msg_id)
    by_id = {m: i for i, m in enumerate(raw.msg_id.tolist())}
    idx = np.array([by_id[m] for m in deliv.msg_id[second].tolist()])
    np.testing.assert_array_equal(deliv.src[second], raw.src[idx])
    np.testing.assert_array_equal(deliv.dst[second], raw.dst[idx])
    assert [deliv.payload[i] for i in np.flatnonzero(second)] == [raw.payload[i] for i in idx]
    # The copy has its own delay draw, logged on the sender's duplicate row.
    logged = pd.read_parquet(tmp_path / "router.parquet")
    dups = logged[logged["kind"] == "duplicate"].set_index("msg_id")["value"]
    assert len(dups) == n_dup
    copy_delay = pd.Series(deliv.time[second] - raw.time[idx], index=deliv.msg_id[second])
    pd.testing.assert_series_equal(
        dups.sort_index().astype(np.int64), copy_delay.sort_index(), check_names=False
    )
    first_delay = deliv.time[~second][idx] - raw.time[idx]
    assert (first_delay != copy_delay.to_numpy()).any()


def test_corruption_is_decided_per_copy() -> None:
    raw = raw_batch(20_000, seed=7)
    router = make_router({"duplicate": 0.5, "corrupt": 0.4}, UNIFORM)
    deliv = router.route(raw)
    assert router.stats.corrupted == int(deliv.corrupt.sum())
    assert binomial_ok(int(deliv.corrupt.sum()), len(deliv), 0.4)
    f = fates(raw, deliv)
    both = [m for m in raw.msg_id.tolist() if (m, 1) in f]
    mixed = sum(f[(m, 0)][1] != f[(m, 1)][1] for m in both)
    assert binomial_ok(mixed, len(both), 2 * 0.4 * 0.6)  # the two copies decided independently


def test_router_logs_every_decision(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "router.parquet", "all")
    raw = raw_batch(6000, seed=8)
    router = make_router(FAULTY, UNIFORM, log=log)
    deliv = router.route(raw)
    log.close()
    df = pd.read_parquet(tmp_path / "router.parquet")
    sends = df[df["kind"] == "send"].set_index("msg_id")
    assert len(sends) == len(raw) and sends.index.is_unique
    drops = df[df["kind"] == "drop"]
    assert set(drops["name"]) == {"loss", "partition"}
    assert (drops.groupby("msg_id").size() == 1).all()
    st_ = router.stats
    assert (drops["name"] == "loss").sum() == st_.lost > 0
    assert (drops["name"] == "partition").sum() == st_.partitioned > 0
    dropped = set(drops["msg_id"])
    assert sends.loc[sorted(dropped), "value"].isna().all()
    kept = deliv.copy == 0
    assert set(deliv.msg_id[kept].tolist()) == set(sends.index) - dropped
    delay = pd.Series(deliv.time[kept], index=deliv.msg_id[kept]) - sends["time"]
    pd.testing.assert_series_equal(
        delay.dropna().astype(np.int64).sort_index(),
        sends["value"].dropna().astype(np.int64).sort_index(),
        check_names=False,
    )
    # Rows of the sender: node = src, peer = dst, at the send time.
    src_of = dict(zip(raw.msg_id.tolist(), raw.src.tolist(), strict=True))
    assert all(src_of[m] == n for m, n in zip(drops["msg_id"], drops["node"], strict=True))


def test_router_partition_boundaries_and_directions() -> None:
    """[start, end) by send time; a_to_b one way; b defaults to the complement of a."""
    n = 30
    t = np.repeat(np.array([99, 100, 199, 200], dtype=np.int64), n * n)
    src = np.tile(np.repeat(np.arange(n), n), 4).astype(np.int64)
    dst = np.tile(np.tile(np.arange(n), n), 4).astype(np.int64)
    k = len(t)
    raw = Messages(
        t,
        src,
        dst,
        (src << SEQ_BITS) | np.arange(k),
        np.zeros(k, dtype=np.int32),
        ["Ping"],
        [],
        np.zeros(k, dtype=np.int8),
        np.zeros(k, dtype=bool),
    )
    in_window = (t >= 100) & (t < 200)

    def cut(part: dict[str, Any]) -> np.ndarray:
        r = make_router({"partitions": [part]}, n_nodes=n)
        delivered = set(r.route(raw).msg_id.tolist())
        return np.array([m not in delivered for m in raw.msg_id.tolist()])

    a = src < 10
    a_dst = dst < 10
    both = cut({"start": 100, "end": 200, "a": "0-9"})
    np.testing.assert_array_equal(both, in_window & (a != a_dst))
    one_way = cut({"start": 100, "end": 200, "a": "0-9", "direction": "a_to_b"})
    np.testing.assert_array_equal(one_way, in_window & a & ~a_dst)
    explicit_b = cut({"start": 100, "end": 200, "a": list(range(10)), "b": "10-14"})
    b = (src >= 10) & (src < 15)
    b_dst = (dst >= 10) & (dst < 15)
    np.testing.assert_array_equal(explicit_b, in_window & ((a & b_dst) | (b & a_dst)))
    forever = cut({"start": 100, "a": "0-9"})
    np.testing.assert_array_equal(forever, (t >= 100) & (a != a_dst))


# --- whole runs: duplication and corruption ---------------------------------------------------


def test_duplicates_are_delivered_twice_with_one_msg_id(tmp_path: Path) -> None:
    cfg = chatter_config(
        delay={"dist": "uniform", "low": 5, "high": 60}, faults={"duplicate": 0.3}, rounds=5
    )
    res, df = run_log(cfg, tmp_path)
    sends = send_table(df)
    dup = rows(df, "duplicate").set_index("msg_id")
    assert binomial_ok(len(dup), len(sends), 0.3)
    assert res.row["duplicated"] == len(dup)
    # The duplicate row is at the sender, at the send time.
    assert (dup["node"] == sends.loc[dup.index, "node"]).all()
    assert (dup["time"] == sends.loc[dup.index, "time"]).all()
    deliv = rows(df, "deliver")
    per_id = deliv.groupby("msg_id").size()
    expected = pd.Series(1, index=sends.index) + pd.Series(1, index=dup.index).reindex(
        sends.index, fill_value=0
    )
    pd.testing.assert_series_equal(per_id.sort_index(), expected.sort_index(), check_names=False)
    # Each copy arrives at send time + its own delay.
    arrivals = deliv.groupby("msg_id")["time"].apply(sorted).to_dict()
    first = (sends["time"] + sends["value"]).astype(np.int64).to_dict()
    second = (sends.loc[dup.index, "time"] + dup["value"]).astype(np.int64).to_dict()
    assert len(second) == len(dup)
    for mid, t in second.items():
        assert arrivals[mid] == sorted([first[mid], t])
    # The handler saw both copies (tag == msg_id: no node ever crashed).
    got = Counter(rows(df, "obs", "got")["value"].astype(np.int64))
    assert got == Counter(deliv["msg_id"])


def test_corrupt_copies_are_logged_and_never_reach_the_handler(tmp_path: Path) -> None:
    cfg = chatter_config(
        delay={"dist": "uniform", "low": 5, "high": 60}, faults={"corrupt": 0.3}, rounds=5
    )
    res, df = run_log(cfg, tmp_path)
    sends = send_table(df)
    cor = rows(df, "corrupt")
    deliv = rows(df, "deliver")
    assert binomial_ok(len(cor), len(sends), 0.3)
    assert res.row["corrupt"] == len(cor) and res.row["delivered"] == len(deliv)
    # Logged at the receiver, at the arrival time, naming the sender.
    s = sends.loc[cor["msg_id"]]
    assert (cor["node"].to_numpy() == s["peer"].to_numpy()).all()
    assert (cor["peer"].to_numpy() == s["node"].to_numpy()).all()
    assert (cor["time"].to_numpy() == (s["time"] + s["value"]).to_numpy()).all()
    # Each message is delivered or corrupt, exactly once; the handler saw only the delivered.
    assert sorted([*cor["msg_id"], *deliv["msg_id"]]) == sorted(sends.index)
    got = rows(df, "obs", "got")["value"].astype(np.int64)
    assert Counter(got) == Counter(deliv["msg_id"])
    assert not set(got) & set(cor["msg_id"])


def test_every_message_has_exactly_one_fate_per_copy(tmp_path: Path) -> None:
    """Loss, partition, duplication, corruption and a crash at once: nothing lost or invented."""
    faults = {
        "loss": 0.15,
        "duplicate": 0.2,
        "corrupt": 0.15,
        "partitions": [{"start": 200, "end": 400, "a": "0-4", "direction": "a_to_b"}],
        "crashes": [{"nodes": "7-8", "at": 150, "recover_at": 450}],
    }
    cfg = chatter_config(
        delay={"dist": "exponential", "mean": 30.0, "min": 3},
        faults=faults,
        rounds=6,
        duration=20_000,
    )
    res, df = run_log(cfg, tmp_path)
    sends = send_table(df)
    at_sender = rows(df, "drop")
    at_sender = at_sender[at_sender["name"].isin(["loss", "partition"])]
    assert at_sender["msg_id"].is_unique
    assert set(at_sender["msg_id"]) == set(sends.index[sends["value"].isna()])
    copies = 1 + rows(df, "duplicate")["msg_id"].value_counts().reindex(sends.index, fill_value=0)
    copies[sends["value"].isna()] = 0
    arrived = pd.concat([rows(df, "deliver"), rows(df, "corrupt"), rows(df, "drop", "crashed")])
    n_arrived = arrived["msg_id"].value_counts().reindex(sends.index, fill_value=0)
    pd.testing.assert_series_equal(n_arrived.sort_index(), copies.sort_index(), check_names=False)
    assert res.row["sent"] == len(sends)
    assert res.row["lost"] + res.row["partitioned"] == len(at_sender)
    assert res.row["dropped_crashed"] == len(rows(df, "drop", "crashed")) > 0


# --- whole runs: partitions ------------------------------------------------------------------

PART_A = set(range(8))


def _crossing(s: pd.DataFrame) -> pd.Series:
    return s["node"].isin(PART_A) != s["peer"].isin(PART_A)


def test_symmetric_partition_cuts_both_ways_during_its_window(tmp_path: Path) -> None:
    faults = {"partitions": [{"start": 300, "end": 600, "a": "0-7"}]}
    res, df = run_log(chatter_config(faults=faults), tmp_path)
    sends = send_table(df)
    crossing = _crossing(sends)
    active = (sends["time"] >= 300) & (sends["time"] < 600)
    assert set(sends.loc[active, "time"]) == {300, 400, 500}
    cut = rows(df, "drop", "partition")
    assert set(cut["msg_id"]) == set(sends.index[crossing & active])
    assert res.row["partitioned"] == len(cut) == 3 * 2 * 8 * 12
    # Drops are logged at the sender at send time; the send row carries no delay.
    s = sends.loc[cut["msg_id"]]
    assert (cut["node"].to_numpy() == s["node"].to_numpy()).all()
    assert (cut["time"].to_numpy() == s["time"].to_numpy()).all()
    assert s["value"].isna().all()
    # Everything else is delivered, crossing traffic included before and after the window.
    delivered = set(rows(df, "deliver")["msg_id"])
    assert delivered == set(sends.index) - set(cut["msg_id"])
    times = set(sends.loc[sends.index.isin(delivered) & crossing, "time"])
    assert times == {0, 100, 200, 600, 700, 800, 900}


def test_one_way_partition_drops_a_to_b_only(tmp_path: Path) -> None:
    faults = {"partitions": [{"start": 300, "end": 600, "a": "0-7", "direction": "a_to_b"}]}
    _, df = run_log(chatter_config(faults=faults), tmp_path)
    sends = send_table(df)
    active = (sends["time"] >= 300) & (sends["time"] < 600)
    a_to_b = sends["node"].isin(PART_A) & ~sends["peer"].isin(PART_A)
    b_to_a = ~sends["node"].isin(PART_A) & sends["peer"].isin(PART_A)
    cut = rows(df, "drop", "partition")
    assert set(cut["msg_id"]) == set(sends.index[a_to_b & active])
    delivered = set(rows(df, "deliver")["msg_id"])
    assert set(sends.index[b_to_a & active]) <= delivered
    assert len(sends.index[b_to_a & active]) == 3 * 12 * 8


# --- whole runs: crashes ---------------------------------------------------------------------


def test_crash_recovery_and_crash_stop(tmp_path: Path) -> None:
    faults = {"crashes": [{"node": 3, "at": 250, "recover_at": 550}, {"node": 5, "at": 420}]}
    cfg = chatter_config(delay=30, faults=faults, long_timer=700)
    res, df = run_log(cfg, tmp_path)
    active = df["kind"].isin(["timer", "deliver", "send", "obs", "duplicate", "corrupt"])
    n3 = df[df["node"] == 3]
    down = n3[(n3["time"] >= 250) & (n3["time"] < 550)]
    assert set(down["kind"]) == {"crash", "drop"}
    assert set(down.loc[down["kind"] == "drop", "name"]) == {"crashed"}
    assert rows(n3, "crash")["time"].tolist() == [250]
    assert rows(n3, "recover")["time"].tolist() == [550]
    # Exactly the messages that arrive while node 3 is down are dropped as crashed.
    sends = send_table(df)
    arrive = sends["time"] + sends["value"]
    to3 = (sends["peer"] == 3) & (arrive >= 250) & (arrive < 550)
    assert set(rows(n3, "drop", "crashed")["msg_id"]) == set(sends.index[to3])
    # rounds at 300, 400, 500 (arriving 330, 430, 530); node 5 is down from 420 on
    assert to3.sum() == 19 + 19 + 18
    # Stable storage survived (boot counter), volatile state did not (fresh instance).
    boots = rows(n3, "obs", "boot")
    assert list(zip(boots["time"], boots["value"], strict=True)) == [(0, 0.0), (550, 1.0)]
    assert rows(n3, "obs", "fresh")[["time", "value"]].values.tolist() == [[550, 0.0]]
    # After recovery it runs again: new rounds, deliveries, its own new long timer.
    assert sorted(set(rows(n3, "send")["time"])) == [0, 100, 200, *range(550, 1451, 100)]
    assert (rows(n3, "deliver")["time"] >= 580).any()
    long3 = rows(n3, "timer")
    assert long3.loc[long3["msg_type"] == "long", "time"].tolist() == [1250]  # not the old 700
    # Crash-stop: node 5 never comes back and nothing happens there after the crash.
    n5 = df[(df["node"] == 5) & (df["time"] >= 420)]
    assert set(n5["kind"]) == {"crash", "drop"}
    assert set(n5.loc[n5["kind"] == "drop", "name"]) == {"crashed"}
    assert len(rows(df[df["node"] == 5], "recover")) == 0
    # Only nodes 3 and 5 ever miss anything; every other node's long timer fired at 700.
    assert set(rows(df, "drop", "crashed")["node"]) == {3, 5}
    longs = rows(df, "timer")
    longs = longs[longs["msg_type"] == "long"]
    assert sorted(longs.loc[longs["time"] == 700, "node"]) == sorted(set(range(20)) - {3, 5})
    assert res.row["dropped_crashed"] == len(rows(df, "drop", "crashed"))
    assert not df[active & (df["node"] == 5) & (df["time"] > 420)].shape[0]


def _lifecycle_nodes(out: Path, nodes: int, seed: int, crash: dict[str, Any]) -> pd.DataFrame:
    """The crash and recover rows of a tiny run (one message per node) with one crash spec."""
    cfg = chatter_config(
        nodes=nodes,
        seed=seed,
        delay=5,
        duration=200,
        rounds=1,
        fanout=1,
        faults={"crashes": [crash]},
    )
    _, df = run_log(cfg, out)
    return df[df["kind"].isin(["crash", "recover"])]


@pytest.mark.parametrize(
    ("nodes", "fraction"), [(40, 0.25), (45, 0.3), (7, 0.5), (1000, 0.013), (10, 1.0)]
)
def test_fraction_crash_picks_exactly_round_fraction_n_nodes(
    tmp_path: Path, nodes: int, fraction: float
) -> None:
    life = _lifecycle_nodes(tmp_path, nodes, 1, {"fraction": fraction, "at": 10})
    assert set(life["kind"]) == {"crash"}
    assert (life["time"] == 10).all()
    assert life["node"].is_unique
    assert len(life) == round(fraction * nodes)  # 45 * 0.3 = 13.5 -> 14, 7 * 0.5 = 3.5 -> 4


def test_fraction_crash_choice_is_seeded(tmp_path: Path) -> None:
    crash = {"fraction": 0.25, "at": 10, "recover_at": 90}
    chosen = []
    for seed in range(5):
        life = _lifecycle_nodes(tmp_path / str(seed), 40, seed, crash)
        crashed = sorted(life.loc[life["kind"] == "crash", "node"])
        assert sorted(life.loc[life["kind"] == "recover", "node"]) == crashed  # the same ones
        assert (life.loc[life["kind"] == "recover", "time"] == 90).all()
        chosen.append(tuple(crashed))
    again = _lifecycle_nodes(tmp_path / "again", 40, 3, crash)
    assert tuple(sorted(again.loc[again["kind"] == "crash", "node"])) == chosen[3]
    assert len(set(chosen)) == 5  # each seed its own choice (C(40, 10) ~ 8.5e8 choices)
