"""Per-run measures of the consensus and detection analysis, on hand-made logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from raysim.analysis import consensus as rc
from raysim.analysis import detection as rd
from tests.test_consensus_checks import cols, obs


def row(**kw: object) -> pd.Series:
    base = {"network.nodes": 5, "end_time": 3000, "faults.crashes": "[]",
            "faults.partitions": "[]"}
    return pd.Series({**base, **kw})


def test_fault_times_and_heal() -> None:
    r = row(**{"faults.crashes": json.dumps([{"node": 0, "at": 1000, "recover_at": 2000}]),
               "faults.partitions": json.dumps([{"a": "1-2", "start": 500, "end": 2500}])})
    hits, healed = rc.fault_times(r)
    assert [h[0] for h in hits] == [500, 1000] and healed == 2500.0
    assert hits[0][1].tolist() == [False, True, True, False, False]
    _, never = rc.fault_times(row(**{"faults.crashes": json.dumps([{"node": 0, "at": 10}])}))
    assert np.isnan(never)


def test_raft_measures_time_the_election_after_the_leaders_crash() -> None:
    log = cols(
        obs(10, 0, "candidate", 1), obs(20, 0, "leader", 1),
        obs(30, 0, "entry", 1, peer=1, ref=-2), obs(40, 0, "commit", 1, peer=1, ref=-2),
        obs(300, 4, "write", 9, ref=9), obs(350, 4, "ok", 9, ref=9),
        (1000, 0, "crash", 0.0, -1, -1),
        obs(1200, 1, "candidate", 2), obs(1210, 2, "candidate", 2),  # a split vote
        obs(1400, 2, "candidate", 3), obs(1450, 2, "leader", 3),
        obs(2100, 2, "commit", 2, peer=3, ref=-4),
    )
    r = row(**{"faults.crashes": json.dumps([{"node": 0, "at": 1000, "recover_at": 2000}])})
    m = rc.raft_measures(log, r)
    assert m["election_time"] == 450 and m["elected"] == 1.0
    assert m["split_votes"] == 1 and m["terms_per_minute"] == 3 / (3000 / 60_000)
    assert m["ops"] == 1 and m["latency_mean"] == 50
    assert m["progress_after_heal"] == 1.0 and m["recovery_time"] == 100
    assert m["leader_after_heal"] == 1.0
    assert m["leaderless"] == 20 + 450 and np.isnan(m["client_recovery_time"])


def test_detector_measures_first_all_and_false() -> None:
    g = pd.DataFrame([
        (1000, "crash", 2, -1, None, 0.0),
        (1100, "obs", 0, 2, "suspect", 0.0), (1300, "obs", 1, 2, "suspect", 0.0),
        (1500, "obs", 3, 2, "suspect", 0.0),
        (500, "obs", 0, 1, "suspect", 0.0),  # node 1 was up: a false suspicion
    ], columns=["time", "kind", "node", "peer", "name", "value"]).sort_values("time")
    m = rd.detector_measures(g, n=4, end=2000.0)
    assert m["detect_first"] == 100 and m["detect_all"] == 500
    live_seconds = (2000 * 3 + 1000) / 1000
    assert m["false_suspicions"] == 1 / live_seconds


def test_a_suspicion_held_since_before_the_crash_counts_at_the_crash() -> None:
    g = pd.DataFrame([
        (800, "obs", 0, 2, "suspect", 0.0),  # by luck, before the crash, never lifted
        (1000, "crash", 2, -1, None, 0.0),
        (1300, "obs", 1, 2, "suspect", 0.0), (1400, "obs", 3, 2, "suspect", 0.0),
        (600, "obs", 3, 2, "suspect", 0.0), (700, "obs", 3, 2, "trust", 0.0),  # lifted
    ], columns=["time", "kind", "node", "peer", "name", "value"]).sort_values("time")
    m = rd.detector_measures(g, n=4, end=2000.0)
    assert m["detect_first"] == 0 and m["detect_all"] == 400
    swim = rd.detector_measures(pd.concat([g, pd.DataFrame(
        [(900, "obs", 1, 3, "suspect", 4.0), (905, "obs", 0, 3, "suspect", 4.0)],
        columns=g.columns)]).sort_values("time"), n=4, end=2000.0, swim=True)
    live_seconds = (2000 * 3 + 1000) / 1000
    assert swim["false_suspicions"] == 4 / live_seconds
    assert swim["false_episodes"] == 2 / live_seconds  # (2, incarnation 0) and (3, 4)


def test_the_papers_fig16_curves_agree_with_its_text_and_sit_beside_ours() -> None:
    paper = rc.paper_fig16().set_index(["timeouts", "percentile"])["ms"]
    assert paper[("150-155", 50)] == 287  # §9.3: "a median downtime of 287ms"
    assert abs(paper[("150-200", 100)] - 513) <= 2  # "the worst-case completion time ... 513ms"
    assert abs(paper[("12-24", 100)] - 152) <= 2  # "the longest trial took 152ms"
    assert paper[("150-150", 1)] > 10_000  # "consistently took longer than 10 seconds"
    frame = pd.DataFrame({"protocol.election_min": [150] * 4, "protocol.election_max": [155] * 4,
                          "election_time": [100.0, 200.0, 300.0, np.nan],
                          "election_terms": [1.0, 2.0, 2.0, np.nan]})
    row = rc.fig16_table(frame).iloc[0]
    assert row["timeouts"] == "150-155" and row["elected"] == 0.75 and row["first term"] == 0.25
    assert row["p50"] == 200 and np.isnan(row["p90"]) and row["paper p50"] == 287
    fig = rc.fig_election_cdf(frame)
    assert [t.name for t in fig.data] == ["150-155 ms (n=4)", "paper 150-155 ms"]
    assert [t.name for t in rc.fig_election_cdf(frame, paper=False).data] == ["150-155 ms (n=4)"]
