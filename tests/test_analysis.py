"""raysim.analysis: exact curves and milestones on hand-made logs, statistics, theory, and
consistency with the engine's own counters on a real sweep."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from raysim import analysis as ra
from raysim.analysis import theory
from raysim.errors import ConfigError
from raysim.log.schema import EVENT_SCHEMA
from tests.sweep_support import averaging_results, tiny_results  # noqa: F401  (fixtures)

# An all-digit run id: hive partitioning must keep it a string.
A, B, ORPHAN, FAILED = "1234567890123456", "b" * 16, "c" * 16, "d" * 16


def _write_events(res: Path, run_id: str, times: list[int], extra_sends: int = 0) -> None:
    n = len(times)
    cols = {
        "time": [*times, *range(extra_sends)],
        "kind": ["obs"] * n + ["send"] * extra_sends,
        "node": [*range(n), *([0] * extra_sends)],
        "peer": [-1] * n + [1] * extra_sends,
        "msg_id": [-1] * (n + extra_sends),
        "msg_type": [None] * n + ["Rumor"] * extra_sends,
        "name": ["informed"] * n + [None] * extra_sends,
        "value": [1.0] * n + [None] * extra_sends,
        "seq": [0] * (n + extra_sends),
        "cause": [-1] * (n + extra_sends),
        "value_type": ["float"] * n + [None] * extra_sends,
    }
    arrays = []
    for f in EVENT_SCHEMA:
        if pa.types.is_dictionary(f.type):
            arrays.append(pa.array(cols[f.name], pa.string()).dictionary_encode().cast(f.type))
        else:
            arrays.append(pa.array(cols.get(f.name, [None] * (n + extra_sends)), f.type))
    table = pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
    d = res / "events" / f"run_id={run_id}"
    d.mkdir(parents=True)
    pq.write_table(table, d / "part-00000.parquet")


@pytest.fixture
def handmade(tmp_path: Path) -> Path:
    """Two ok runs of 4 nodes (period 10), a failed run, and an orphan events directory."""
    res = tmp_path / "hand"
    _write_events(res, A, [0, 10, 20, 30], extra_sends=3)
    _write_events(res, B, [0, 10, 10, 40])
    _write_events(res, ORPHAN, [0, 0, 0, 0])
    base = {"experiment": "hand", "protocol": "gossip.push", "protocol.mode": "push",
            "protocol.period": 10, "network.nodes": 4, "faults.loss": 0.0, "nodes": 4}
    pd.DataFrame([
        {**base, "run_id": A, "replicate": 0, "seed": 11, "status": "ok", "sent": 8},
        {**base, "run_id": B, "replicate": 1, "seed": 12, "status": "ok", "sent": 12},
        {**base, "run_id": FAILED, "replicate": 2, "seed": 13, "status": "failed", "sent": None},
    ]).to_parquet(res / "runs.parquet", index=False)
    return res


def test_runs_exclude_failed_and_events_exclude_runs_without_a_row(handmade: Path) -> None:
    runs = ra.load_runs(handmade)
    assert list(runs["run_id"]) == [A, B]
    assert len(ra.load_runs(handmade, status=None)) == 3
    obs = ra.observations(handmade, "informed")
    assert set(obs["run_id"]) == {A, B} and len(obs) == 8
    assert list(obs.columns) == ["run_id", "time", "node", "value"]


def test_events_are_read_column_selected_and_filtered(handmade: Path) -> None:
    sends = ra.load_events(handmade, ["time", "kind"], ds.field("kind") == "send",
                           params=["protocol.mode"])
    assert list(sends.columns) == ["run_id", "time", "kind", "protocol.mode"]
    assert len(sends) == 3 and set(sends["run_id"]) == {A}
    one = ra.load_events(handmade, ["node"], run_ids=[B])
    assert len(one) == 4 and set(one["run_id"]) == {B}
    assert ra.events_dataset(handmade).schema.field("run_id").type == pa.string()


def test_convergence_curve_mean_and_band_are_exact(handmade: Path) -> None:
    curves = ra.convergence_curves(handmade, by=[], step=1.0)
    assert list(curves["round"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    # A informs 1,2,3,4 nodes at rounds 0..3; B 1,3,3,3,4 at rounds 0..4.
    np.testing.assert_allclose(curves["mean"], [0.25, 0.625, 0.75, 0.875, 1.0])
    half = 12.706 * np.std([0.5, 0.75], ddof=1) / math.sqrt(2)
    assert curves["lo"].iloc[1] == pytest.approx(max(0.0, 0.625 - half))
    assert curves["hi"].iloc[1] == 1.0  # clipped
    assert curves["lo"].iloc[0] == curves["hi"].iloc[0] == 0.25  # no spread, no band
    assert set(curves["n"]) == {2}


def test_milestones_and_messages_per_node(handmade: Path) -> None:
    per_run = ra.milestones(handmade).set_index("run_id")
    assert per_run.loc[A, ["rounds_to_50", "rounds_to_99", "rounds_to_100"]].tolist() == [1, 3, 3]
    assert per_run.loc[B, ["rounds_to_50", "rounds_to_99", "rounds_to_100"]].tolist() == [1, 4, 4]
    assert per_run.loc[A, "messages_per_node"] == 2.0 and per_run.loc[B, "messages_per_node"] == 3
    summary = ra.milestone_summary(per_run.reset_index(), by=[])
    row = summary.set_index("metric").loc["rounds_to_100"]
    assert (row["mean"], row["n"]) == (3.5, 2)
    assert ra.milestone_column(0.5) == "rounds_to_50"
    assert ra.milestone_column(0.999) == "rounds_to_99.9"


def test_unknown_results_directories_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such results directory"):
        ra.load_runs(tmp_path / "nope")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "runs.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="experiments inside: exp"):
        ra.load_runs(tmp_path)


def test_t_quantiles_and_bands() -> None:
    assert ra.t975(1) == 12.706 and ra.t975(10) == 2.228 and ra.t975(30) == 2.042
    assert ra.t975(31) == pytest.approx(2.0395, abs=1e-3)
    assert ra.t975(1000) == pytest.approx(1.9623, abs=1e-3)
    values = np.array([[1.0], [2.0], [3.0], [np.nan]])
    mean, lo, hi, n = ra.band_of(values)
    assert (mean[0], n[0]) == (2.0, 3) and hi[0] - mean[0] == pytest.approx(4.303 / math.sqrt(3))
    mean, lo, hi, n = ra.band_of(np.arange(101.0), band="quantile")
    assert (float(lo), float(hi)) == (2.5, 97.5)


def test_theory_orders_the_modes_and_matches_pittel() -> None:
    n = 10_000
    rounds = {m: theory.rounds_to_fraction(m, n, 1.0) for m in theory.MODES}
    assert rounds["push_pull"] < rounds["pull"] < rounds["push"]
    for size in (10**3, 10**4, 10**5):
        assert abs(theory.rounds_to_fraction("push", size, 1.0) - theory.push_rounds(size)) < 2
        assert theory.rounds_to_fraction("push_pull", size, 1.0) >= theory.push_pull_rounds(size)
    curve = theory.mean_field("pull", n, loss=0.3)
    assert np.all(np.diff(curve) > 0) and curve[0] == pytest.approx(1 / n)
    assert n * (1 - curve[-1]) < 0.5
    lossy = theory.rounds_to_fraction("push", n, 0.5, loss=0.3)
    assert lossy > theory.rounds_to_fraction("push", n, 0.5)
    assert theory.averaging_variance(2, 1.0)[-1] == pytest.approx(1 / (4 * math.e))
    with pytest.raises(ValueError, match="mode"):
        theory.mean_field("shout", 10)


def test_real_sweep_agrees_with_the_engines_counters(tiny_results: Path) -> None:  # noqa: F811
    runs = ra.load_runs(tiny_results)
    assert set(ra.varying_params(runs)) == {"protocol.mode", "network.nodes", "faults.loss"}
    per_run = ra.milestones(tiny_results, runs=runs)
    np.testing.assert_allclose(per_run["rounds_to_100"], per_run["metric.rounds_to_full"])
    np.testing.assert_allclose(per_run["messages_per_node"], per_run["metric.messages_per_node"])
    assert (per_run["rounds_to_50"] <= per_run["rounds_to_99"]).all()
    curves = ra.convergence_curves(tiny_results, runs=runs)
    ends = curves.groupby(["protocol.mode", "network.nodes", "faults.loss"])["mean"].last()
    assert len(ends) == 12 and (ends == 1.0).all()
    assert set(curves["n"]) == {2}
    th = ra.theory_curves(curves, runs)
    assert len(th.groupby(["protocol.mode", "network.nodes", "faults.loss"])) == 12
    fig = ra.fig_convergence(curves, th)
    titles = {a.text for a in fig.layout.annotations}
    assert {"loss=0.0, mode=push", "loss=0.2, mode=push_pull"} <= titles
    summary = ra.milestone_summary(per_run)
    tm = ra.theory_milestones(summary, runs)
    assert tm["pittel"].notna().sum() == 2  # push, loss 0, rounds_to_100, two sizes
    assert len(ra.fig_milestones(summary, tm).data) > 12
    assert len(ra.fig_messages(summary).data) == 6


def test_averaging_variance_shrinks_about_as_theory_says(averaging_results: Path) -> None:  # noqa: F811
    per = ra.variance_per_round(averaging_results)
    assert set(per["nodes"]) == {60} and per["round"].min() == 0
    summary = ra.variance_summary(averaging_results)
    assert set(summary["n"]) == {3}
    ratio = np.exp(np.mean(np.diff(np.log(summary["mean"].to_numpy()[:6]))))
    assert 0.1 < ratio < 0.5, ratio  # theory: 1/(2√e) ≈ 0.30 per round
    first = summary["mean"].iloc[0]
    assert summary["theory"].iloc[1] == pytest.approx(first * theory.AVERAGING_FACTOR)
    assert len(ra.fig_variance(summary).data) == 3
