"""Chord analysis: true owners, summaries, traffic, key load, figures, report and notebook."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raysim.analysis import chord as rc
from raysim.analysis import report
from raysim.experiments.config import validate
from raysim.experiments.runner import run
from tests.conftest import check_notebook_stored_clean, execute_notebook
from tests.sweep_support import finished_sweep

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "chord_lookups.ipynb"

SMALL: dict[str, Any] = {
    "experiment": {"name": "chord_small", "protocol": "chord", "seed": 4, "duration": 25_000},
    "protocol": {"lookup_rate": 1.0},
    "network": {"nodes": 16, "delay": {"dist": "uniform", "low": 20, "high": 100}},
    "faults": {"churn": {"model": "none", "start": 5000, "departure": "fail"}},
    "log": {"level": "all"},
    "sweep": {
        "seeds": 1,
        "network.nodes": [16, 64],
        "zip": [{"faults.churn.model": ["none", "poisson"], "faults.churn.rate": [0.0, 2.0]}],
    },
}


@pytest.fixture(scope="module")
def chord_results(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-run chord sweep: N = 16, 64 x no churn, Poisson churn at 2/s."""
    out = tmp_path_factory.mktemp("chord")
    finished_sweep(SMALL, where="chord", out=out)
    return out / "chord_small"


@pytest.fixture(scope="module")
def failure_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs of 96 nodes in one results directory: p = 0, 0.25 and 0.5 fail at 10 s."""
    out = tmp_path_factory.mktemp("fail")
    for crashes in ([], [{"fraction": 0.25, "at": 10_000}], [{"fraction": 0.5, "at": 10_000}]):
        cfg = validate({
            "experiment": {"name": "chord_fail", "protocol": "chord", "seed": 2,
                           "duration": 50_000},
            "protocol": {"lookup_rate": 1.0},
            "network": {"nodes": 96, "delay": {"dist": "uniform", "low": 20, "high": 100}},
            "faults": {"crashes": crashes},
            "log": {"level": "observations"},
        }, "test")
        assert run(cfg, out).status == "ok"
    return out / "chord_fail"


# --- pure functions --------------------------------------------------------------------------


def test_true_owners_match_a_brute_force_replay() -> None:
    rng = np.random.default_rng(3)
    n = 40
    ids = rng.choice(1 << 20, size=n, replace=False)
    ct = np.sort(rng.integers(0, 1000, size=120))
    cn = rng.integers(0, n, size=120)
    cu = rng.random(120) < 0.5
    ct = np.concatenate([np.zeros(n, dtype=np.int64), ct])  # everyone starts up
    cn = np.concatenate([np.arange(n), cn])
    cu = np.concatenate([np.ones(n, dtype=bool), cu])
    qt = rng.integers(0, 1100, size=300)
    qk = rng.integers(0, 1 << 20, size=300)
    got = rc.true_owners(ids, ct, cn, cu, qt, qk)
    for t, k, g in zip(qt, qk, got, strict=True):
        up = np.ones(n, dtype=bool) * False
        for tt, nn, uu in zip(ct, cn, cu, strict=True):
            if tt <= t:
                up[nn] = uu
        live = np.flatnonzero(up)
        want = live[np.argmin((ids[live] - k) % (1 << 20))] if len(live) else -1
        assert g == want


def test_summary_pools_hops_and_averages_failure_rates_over_runs() -> None:
    look = pd.DataFrame({
        "run_id": ["a"] * 4 + ["b"] * 4, "network.nodes": [8] * 8,
        "start": [0, 10, 20, 30] * 2, "hops": [1, 2, 3, 4, 2, 2, 2, 2],
        "timeouts": [0, 0, 1, 0, 0, 0, 0, 0], "latency": [100.0] * 8,
        "gave_up": [False, False, True, False] + [False] * 4,
        "wrong": [False] * 7 + [True],
    })
    look["failed"] = look["gave_up"] | look["wrong"]
    s = rc.lookup_summary(look, ["network.nodes"]).iloc[0]
    assert s["runs"] == 2 and s["lookups"] == 8
    assert s["hops_mean"] == pytest.approx(15 / 7)  # the lookup that gave up has no path
    assert s["failed"] == pytest.approx((0.25 + 0.25) / 2) and s["gave_up"] == 0.125
    late = rc.lookup_summary(look, ["network.nodes"], window=(15, math.inf)).iloc[0]
    assert late["lookups"] == 4 and late["failed"] == pytest.approx(0.5 * (0.5 + 0.5))
    dist = rc.hop_distribution(look, ["network.nodes"])
    assert dist["share"].sum() == pytest.approx(1.0)
    assert dist.set_index("hops")["count"].to_dict() == {1: 1, 2: 5, 4: 1}


def test_crash_and_churn_columns() -> None:
    assert rc.crash_fraction('[{"at": 5, "fraction": 0.2}, {"at": 9, "node": 3}]') == 0.2
    assert rc.crash_fraction("[]") == 0.0
    runs = pd.DataFrame({"faults.crashes": ['[{"at": 700, "fraction": 0.1}]', "[]"],
                         "faults.churn.start": [0, 3000]})
    assert rc.crash_time(runs) == 700 and rc.churn_start(runs) == 3000


def test_more_virtual_nodes_even_out_the_key_load() -> None:
    load = rc.key_load(n_nodes=256, keys_per_node=100, vnodes=(1, 5, 20), replicates=2)
    agg = load.groupby("vnodes")[["p1", "p99", "max", "mean"]].mean()
    spread = (agg["p99"] - agg["p1"]) / agg["mean"]
    assert spread.is_monotonic_decreasing and spread[1] > 3 * spread[20]
    assert (agg["mean"] == 100).all()
    assert agg.loc[1, "max"] / 100 > 4  # one identifier per node: some nodes own far too much
    fig = rc.fig_key_load(load)
    assert [t.name for t in fig.data] == ["p1", "p50", "p99", "max"]


def test_keys_move_only_to_the_joining_node_on_the_toolkit_ring() -> None:
    moves = rc.keys_moved_on_join(n_nodes=200, keys_per_node=100, joins=12)
    assert moves["only_to_new"].all() and (moves["from_owners"] == 1).all()
    assert moves["fraction"].mean() == pytest.approx(1 / 201, rel=0.6)
    assert (moves["moved"] > 0).all()


# --- on small runs --------------------------------------------------------------------------


def test_lookups_are_read_with_their_true_owner(chord_results: Path) -> None:
    runs = rc.chord_runs(chord_results)
    assert len(runs) == 4 and sorted(rc.axes(runs)) == ["churn_rate", "network.nodes"]
    look = rc.lookups(chord_results, runs=runs)
    assert {"owner", "failed", "hops", "latency", "timeouts", "churn_rate"} <= set(look.columns)
    calm = look[look["churn_rate"] == 0]
    assert len(calm) > 500 and not calm["failed"].any() and (calm["end"] == calm["owner"]).all()
    assert (look["start"] <= look["time"]).all() and (calm["latency"] > 0).all()
    churned = look[look["churn_rate"] > 0]
    assert churned["timeouts"].sum() > 0  # nodes failed under it
    joined = rc.lookups(chord_results, runs=runs, members="joined")
    assert joined["failed"].sum() <= look["failed"].sum()


def test_maintenance_traffic_per_node_and_second(chord_results: Path) -> None:
    maint = rc.maintenance(chord_results)
    assert set(maint["traffic"]) >= {"stabilize", "notify", "check_predecessor", "fix_fingers",
                                     "lookups"}
    per = maint.groupby("traffic")["per_node_per_s"].mean()
    assert 0.7 < per["stabilize"] < 1.3 and per["lookups"] > 2.0
    churn = maint[maint["traffic"] == "join"].set_index("churn_rate")["messages"]
    assert churn.loc[0.0].sum() == 0 and churn.loc[2.0].sum() > 0
    summary = rc.maintenance_summary(maint)
    assert {"churn_rate", "network.nodes", "traffic", "mean", "lo", "hi"} <= set(summary.columns)
    fig = rc.fig_maintenance(summary, "churn_rate")
    assert len(fig.data) >= 5


def test_figures_show_the_half_log2_n_line(chord_results: Path) -> None:
    look = rc.lookups(chord_results)
    summary = rc.lookup_summary(look, ["network.nodes"])
    fig = rc.fig_hops_vs_n(summary)
    theory = next(t for t in fig.data if t.name == "½·log₂N")
    assert list(theory.y) == [2.0, 3.0]
    assert len(rc.fig_hop_distribution(rc.hop_distribution(look)).data) == 4
    assert len(rc.fig_hops_vs(rc.lookup_summary(look), "churn_rate").data) == 4


def test_report_has_the_chord_figures(chord_results: Path, failure_results: Path) -> None:
    page = report.build(chord_results)
    for title in ("Chord: lookup path length against N", "Chord: path length distribution",
                  "Chord: failed lookups against the churn rate R",
                  "Chord: maintenance traffic against the churn rate",
                  "Consistent hashing: keys per node against virtual nodes",
                  "Consistent hashing: keys moved on a join"):
        assert title in page
    assert page.count('id="fig-chord-') >= 6 and page == report.build(chord_results)
    page = report.build(failure_results)
    assert "Chord: failed lookups against the fraction p of nodes failed at once" in page
    assert "Chord: lookup path length against N" not in page  # N does not vary there


def test_failures_right_after_a_mass_failure_and_after_stabilization(
    failure_results: Path,
) -> None:
    look = rc.lookups(failure_results)
    soon = rc.lookup_summary(look, ["fail_fraction"], window=(10_000, 20_000))
    later = rc.lookup_summary(look, ["fail_fraction"], window=(40_000, math.inf))
    assert soon["failed"].iloc[0] == 0.0 and soon["failed"].iloc[2] > soon["failed"].iloc[0]
    assert soon["timeouts_mean"].is_monotonic_increasing
    assert (later["failed"] < 0.02).all()
    fig = rc.fig_failures({"soon": soon, "later": later}, "fail_fraction")
    assert len(fig.data) == 3  # two lines and y = p


def test_notebook_is_stored_without_outputs() -> None:
    check_notebook_stored_clean(NOTEBOOK, "from raysim.analysis import chord")


def test_notebook_runs_on_a_small_sweep(
    chord_results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, figures = execute_notebook(NOTEBOOK, chord_results, monkeypatch)
    assert "4 chord runs" in text and "swept: network.nodes, churn_rate" in text
    assert figures == 5


def test_key_loss_is_about_p_and_matches_a_brute_force_count(failure_results: Path) -> None:
    """The paper's failed lookup: the key's data is gone (its owner, and with r replicas
    its r successors, all failed) — about p without replication, about p^(r+1) with it."""
    runs = rc.chord_runs(failure_results)
    life = rc.lifecycle(failure_results, runs)
    look = rc.lookups(failure_results, runs=runs)
    later = look[look["start"] >= 40_000]
    for r in (0, 2):
        lost = rc.lost_keys(later, life, runs, replicas=r)
        for rid, g in later.groupby("run_id"):
            ids = rc.run_ids(runs, str(rid))
            lf = life[life["run_id"] == rid]
            dead = set(lf.loc[~lf["up"], "node"].tolist())  # crashed at 10 s, never back
            ring = sorted(range(len(ids)), key=lambda n: ids[n])
            want = []
            for key in g["key"].tolist():
                i = next((j for j, n in enumerate(ring) if ids[n] >= key), 0)
                want.append(all(ring[(i + j) % len(ring)] in dead for j in range(r + 1)))
            assert lost[later.index.get_indexer(g.index)].tolist() == want
    summary = rc.lookup_summary(later, ["fail_fraction"])
    p = summary["fail_fraction"].to_numpy()
    assert summary["lost"].iloc[0] == 0.0
    assert (abs(summary["lost"] - p) < 0.12).all(), summary[["fail_fraction", "lost"]]
    assert (summary["failed"] < 0.02).all()  # routing recovered; the data did not
    fig = rc.fig_key_loss({"r = 0": summary}, "fail_fraction")
    assert len(fig.data) == 3  # routing failed, key lost, y = p
    assert report.build(failure_results).count("Chord: routing failures and lost keys") == 1
