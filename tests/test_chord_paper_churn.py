"""The Chord paper's churn experiment (Stoica et al. 2001, §6.5, Fig. 12): its setup, the
finger refresh of every round, exponential maintenance periods, and the paper's points in
the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raysim.analysis import chord as rc
from raysim.analysis import chord_paper as cp
from raysim.analysis import chord_report as cr
from raysim.experiments.config import load
from raysim.protocols.chord import messages as cm
from raysim.protocols.chord.lookup import FINGER
from raysim.protocols.chord.protocol import Chord, ChordParams
from raysim.protocols.chord.ring import node_ids

from .test_chord import FakeContext, N

ROOT = Path(__file__).resolve().parents[1]


def test_the_experiment_file_has_the_papers_setup() -> None:
    cfg = load(ROOT / "experiments" / "chord_paper_churn.toml")
    p = ChordParams(**cfg.protocol)
    assert (p.stabilize, p.fix_fingers, p.check_predecessor) == (30_000, 30_000, 30_000)
    assert p.fix_all_fingers and p.max_retries == 0 and p.mode == "iterative"
    churn = cfg.faults.churn
    up = round(churn.initial * cfg.network.nodes)
    assert up == 500 and churn.model == "poisson" and churn.departure == "fail"
    assert abs(p.lookup_rate * up - 1.0) < 1e-9  # one lookup per second in all
    assert cfg.experiment.duration_ticks - p.lookup_start == 7_200_000  # two hours measured


def test_paper_points_are_the_texts_estimate() -> None:
    points = cp.churn_points()
    assert list(points.columns) == ["churn_rate", "failed", "kind"]
    assert np.allclose(points["churn_rate"], np.arange(1, 11) / 100)
    # 5 k / 500 with k = 30 s x R failures between stabilizations; 3 % at R = 0.1
    assert np.allclose(points["failed"], 5 * 30 * points["churn_rate"] / 500)
    assert cp.churn_points(ROOT / "no-such.csv").empty


def _answer(c: Chord, ctx: FakeContext) -> int:
    """Answer every finger query with the key's true successor; the number asked."""
    ids = node_ids(N, 16)
    asked = 0
    while sent := ctx.take():
        (_, q), = sent
        assert isinstance(q, cm.FAMILIES[FINGER].Query)
        owner = min(range(N), key=lambda n: (ids[n] - q.key) % (1 << 16))
        c.on_message(ctx, 0, cm.FAMILIES[FINGER].Done(q.req, (owner,)))
        asked += 1
    return asked


def test_fix_all_fingers_refreshes_the_whole_table_in_one_round() -> None:
    for every in (False, True):
        c = Chord(ChordParams(m=16, lookup_rate=0, placement="index", fix_all_fingers=every), 5)
        ctx = FakeContext(5, N)
        c.on_start(ctx)
        right = list(c.fingers)
        c.fingers = [c.succs[0]] * 16  # stale: every finger at the successor
        c._rebuild()
        ctx.take()
        c.on_timer(ctx, "fix_fingers")
        asked = _answer(c, ctx)
        if every:
            assert c.fingers == right and asked == len(set(right)) - 1 and not c.fixing
        else:
            assert asked == 1 and c.fingers != right


def test_exponential_intervals_have_the_mean_and_spread_of_an_exponential() -> None:
    gaps = {}
    for kind in ("uniform", "exponential"):
        c = Chord(ChordParams(m=16, lookup_rate=0, placement="index", intervals=kind), 5)
        ctx = FakeContext(5, N)
        c.on_start(ctx)
        got = []
        for _ in range(2000):
            c._every(ctx, 30_000, "stabilize")
            got.append(ctx.timers[len(ctx.timers) - 1].when - ctx.now)
        gaps[kind] = np.array(got, dtype=float)
    assert gaps["uniform"].min() >= 15_000 and gaps["uniform"].max() <= 45_000
    e = gaps["exponential"]
    assert abs(e.mean() - 30_000) < 3 * 30_000 / np.sqrt(len(e))
    assert e.max() > 90_000 and abs(e.std() / e.mean() - 1) < 0.1


def test_report_overlays_the_paper_only_on_its_experiment() -> None:
    runs = pd.DataFrame({"experiment.name": ["chord_paper_churn"] * 2})
    assert cr._paper_churn(runs) is not None
    assert cr._paper_churn(runs.assign(**{"experiment.name": "chord_churn"})) is None
    summary = pd.DataFrame({"churn_rate": [0.01, 0.1], "failed": [0.002, 0.016],
                            "failed_lo": [0.001, 0.01], "failed_hi": [0.003, 0.02],
                            "wrong": [0.0, 0.002], "gave_up": [0.002, 0.014]})
    fig = rc.fig_failures({"under churn": summary}, "churn_rate", paper=cp.churn_points(),
                          paper_label=cp.LABEL)
    assert [t.name for t in fig.data] == ["under churn", cp.LABEL]
    assert list(fig.data[1].y) == list(cp.churn_points()["failed"])
