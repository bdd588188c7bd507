"""Rumor mongering against Demers et al. 1987, Table 1, through an independent cycle model.

``cycles`` is a ~25-line numpy model of the paper's simulation: synchronous cycles in which
every infective site pushes to one random other site, "already known" is judged against the
state at the cycle's start, and the counter counts unnecessary contacts in a row (a useful
contact resets it). It reproduces the paper's residue and traffic; the semantics of an
event-ordered run without the reset does not. ``gossip.rumor`` with ``phase =
"synchronous"`` is then held against the model at n = 100.
"""

from __future__ import annotations

import numpy as np

from raysim.analysis.replication import paper_tables
from raysim.protocols.gossip import rumor as rm
from raysim.testing import FakeContext
from tests.replication_fake import FakeNet

SUSCEPTIBLE, INFECTIVE, REMOVED = 0, 1, 2


def cycles(n: int, k: int, rng: np.random.Generator, at_start: bool = True,
           reset: bool = True) -> tuple[float, float]:
    """One epidemic of push, feedback, counter k on n sites: (residue, traffic per site)."""
    st = np.zeros(n, np.int8)
    st[0] = INFECTIVE
    count = np.zeros(n, np.int64)
    traffic = 0
    while (st == INFECTIVE).any():
        inf = rng.permutation(np.flatnonzero(st == INFECTIVE))  # the order a cycle runs in
        dst = rng.integers(0, n - 1, len(inf))
        dst += dst >= inf  # a random *other* site
        traffic += len(inf)
        new = st[dst] == SUSCEPTIBLE
        if not at_start:  # event order: only the first push to a site is news
            first = np.zeros(len(dst), bool)
            first[np.unique(dst, return_index=True)[1]] = True
            new &= first
        count[inf[~new]] += 1
        if reset:
            count[inf[new]] = 0
        st[inf[count[inf] >= k]] = REMOVED
        st[dst[st[dst] == SUSCEPTIBLE]] = INFECTIVE  # they push from the next cycle on
    return float((st == SUSCEPTIBLE).mean()), traffic / n


def _model(n: int, k: int, runs: int, **kw: bool) -> np.ndarray:
    rng = np.random.default_rng(k)
    return np.array([cycles(n, k, rng, **kw) for _ in range(runs)]).mean(axis=0)


def test_cycle_model_reproduces_table_1_and_event_order_does_not() -> None:
    table = paper_tables()["push/feedback/counter"].set_index("k")
    for k in (1, 2, 4):
        residue, traffic = _model(1000, k, 20)
        paper = table.loc[k]
        assert abs(traffic - paper["traffic"]) < 0.1, (k, traffic)
        assert abs(np.log(residue / paper["residue"])) < 0.35, (k, residue)
    # event order without the reset: the mean-field traffic (k+1)(1-s), well below the table
    residue, traffic = _model(1000, 2, 20, at_start=False, reset=False)
    assert traffic < table.loc[2, "traffic"] - 0.3 and residue > 0.05


def test_gossip_rumor_matches_the_cycle_model() -> None:
    n, k = 100, 2
    out = []
    for seed in range(4):  # 4 runs x 10 rumors, each run with its own node seeds
        p = rm.RumorParams(rumors=10, k=k, phase="synchronous")
        net = FakeNet([rm.Rumor(p, i) for i in range(n)], low=1, high=300, seed=seed,
                      ctx_seed=seed)
        net.start()
        net.run(40_000)
        m = rm.rumor_metrics(p, net.events(), n)
        out.append((m["residue"], m["traffic"]))
    residue, traffic = np.mean(out, axis=0)
    m_residue, m_traffic = _model(n, k, 1000)
    assert abs(traffic - m_traffic) < 0.08, (traffic, m_traffic)  # ~4.5 standard errors
    assert abs(residue - m_residue) < 0.02, (residue, m_residue)
    no_reset = _model(n, k, 1000, reset=False)[1]
    assert abs(traffic - no_reset) > 0.15  # the test tells the two counters apart


def _push(proto: rm.Rumor, ctx: FakeContext, src: int, ids: tuple[int, ...]) -> None:
    ctx.deliver(proto, src, rm.Rumors(ids, reply=False))


def test_two_pushes_in_one_cycle_are_both_news() -> None:
    p = rm.RumorParams(k=1, rumors=1)
    site, ctx = rm.Rumor(p, 5), FakeContext(5, 10)
    _push(site, ctx, 1, (0,))
    _push(site, ctx, 2, (0,))  # same cycle: judged against the cycle's start
    fb = [(s.dst, s.msg) for s in ctx.take_sent()]
    assert fb == [(1, rm.Feedback((), (0,))), (2, rm.Feedback((), (0,)))]
    ctx.now = p.period
    site.on_timer(ctx, rm.CYCLE)  # the next cycle: now it knew
    ctx.take_sent()
    _push(site, ctx, 3, (0,))
    assert [(s.dst, s.msg) for s in ctx.take_sent()] == [(3, rm.Feedback((0,), ()))]
    random_phase = rm.Rumor(p.model_copy(update={"phase": "random"}), 5)
    ctx = FakeContext(5, 10)
    _push(random_phase, ctx, 1, (0,))
    _push(random_phase, ctx, 2, (0,))  # event order: the second push is unnecessary
    assert [s.msg for s in ctx.take_sent()][1] == rm.Feedback((0,), ())


def test_a_useful_contact_resets_the_counter() -> None:
    for reset, hot_after in ((True, True), (False, False)):
        p = rm.RumorParams(k=2, rumors=1, reset=reset)
        origin, ctx = rm.Rumor(p, 0), FakeContext(0, 10)
        origin.on_start(ctx)
        ctx.fire_timers(origin, 0)  # rumor 0 is injected here
        for fb in (rm.Feedback((0,)), rm.Feedback((), (0,)), rm.Feedback((0,))):
            ctx.deliver(origin, 3, fb)
        ctx.now = p.period
        origin.on_timer(ctx, rm.CYCLE)  # interest lost in a cycle takes effect now
        assert (0 in origin.hot) is hot_after
