"""The engine's fast paths compute exactly what their plain definitions say.

Each shortcut (a packed-value sort for the window order, for ranks and for pending
batches, a blocked and factored draw of the random overlay) must give the same result,
element for element, as the straightforward numpy it replaces, or logs would change.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from raysim.engine import compiled
from raysim.engine.batch import occurrence
from raysim.engine.order import _sort, order_window
from raysim.engine.pending import _stable_order
from raysim.network.topology import random_overlay
from raysim.values.rng import derive, uniform_array

small = st.integers(min_value=1, max_value=40)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), small, small, small, st.booleans(), st.integers(0, 2**31))
def test_window_order_is_lexsort(n: int, t: int, nodes: int, ids: int, copies: bool,
                                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    time = rng.integers(0, t, n) + 1000
    prio = rng.integers(0, 3, n)
    node = rng.integers(0, nodes, n)
    k1 = rng.integers(0, ids, n) << 32
    k2 = rng.integers(0, 2, n) if copies else np.zeros(n, dtype=np.int64)
    want = np.lexsort((k2, k1, node, prio, time))
    assert np.array_equal(_sort(time, prio, node, k1, k2, copies), want)
    assert compiled.available(), "the compiled hot path is not built (make install)"
    from raysim.engine import _hotpath

    keys = [np.ascontiguousarray(c, dtype=np.int64) for c in (time, prio, node, k1, k2)]
    assert np.array_equal(_hotpath.lexorder(*keys), want)  # small windows' compiled order


def test_window_order_with_keys_too_wide_to_pack() -> None:
    time = np.array([2**40, 0, 2**40, 0, 5])
    node = np.array([2**30, 1, 2**30, 1, 0])
    prio = np.array([1, 2, 1, 2, 0])
    k1 = np.array([3, 1, 2, 1, 0])
    k2 = np.array([0, 1, 0, 0, 0])
    want = np.lexsort((k2, k1, node, prio, time))
    assert np.array_equal(_sort(time, prio, node, k1, k2, True), want)
    from raysim.engine import _hotpath

    assert np.array_equal(_hotpath.lexorder(time, prio, node, k1, k2), want)


def _occurrence_reference(keys: np.ndarray) -> np.ndarray:
    seen: dict[int, int] = {}
    out = []
    for k in keys.tolist():
        out.append(seen.get(k, 0))
        seen[k] = out[-1] + 1
    return np.array(out, dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**62), 2**62)),
       st.integers(1, 50))
def test_occurrence_counts_equal_keys_before(raw: np.ndarray, spread: int) -> None:
    for keys in (raw, raw % spread):  # wide keys (the stable-argsort path) and narrow ones
        assert np.array_equal(occurrence(keys), _occurrence_reference(keys))


@settings(max_examples=100, deadline=None)
@given(arrays(np.int64, st.integers(1, 500), elements=st.integers(-(2**40), 2**40)),
       st.integers(1, 2**17))
def test_pending_order_is_the_stable_argsort(raw: np.ndarray, spread: int) -> None:
    for t in (raw, raw % spread):
        assert np.array_equal(_stable_order(t), np.argsort(t, kind="stable"))


def _overlay_reference(seed: int, n_nodes: int, degree: int, nodes: np.ndarray) -> np.ndarray:
    """The overlay's definition: slot s of node r on attempt a draws uniform_array(key, r, s,
    a); every copy of a value after its first in a row is redrawn on the next attempt."""
    key = derive(seed, 0x70F0)
    rows = np.repeat(nodes.astype(np.int64), degree)
    slots = np.tile(np.arange(degree, dtype=np.int64), len(nodes))

    def draw(attempt: int, r: np.ndarray, s: np.ndarray) -> np.ndarray:
        u = uniform_array(key, r, s, np.full(r.shape, attempt, dtype=np.int64))
        v = np.minimum((u * (n_nodes - 1)).astype(np.int64), n_nodes - 2)
        return v + (v >= r)

    adj = draw(0, rows, slots).reshape(len(nodes), degree)
    attempt = 1
    while True:
        order = np.argsort(adj, axis=1, kind="stable")
        srt = np.take_along_axis(adj, order, axis=1)
        dup_sorted = np.zeros_like(srt, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        if not dup_sorted.any():
            return adj.astype(np.int32)
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        ri, ci = np.nonzero(dup)
        adj[ri, ci] = draw(attempt, nodes[ri].astype(np.int64), ci.astype(np.int64))
        attempt += 1


def test_random_overlay_is_its_definition() -> None:
    for seed, n, k, lo, hi in [(7, 70_000, 20, 0, 70_000), (3, 50, 49, 0, 50),
                               (1, 30, 5, 10, 25), (5, 21, 20, 3, 21)]:
        nodes = np.arange(lo, hi)
        got = random_overlay(seed, n, k, nodes)
        assert got.dtype == np.int32
        assert np.array_equal(got, _overlay_reference(seed, n, k, nodes))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.booleans(),
       st.integers(0, 2**31))
def test_compiled_window_order_is_numpys(n_l: int, n_m: int, n_t: int, copies: bool,
                                         seed: int) -> None:
    """``order_window`` with the compiled key columns and merge sort (small windows) gives
    the keys, dtypes and order of the numpy path."""
    assert compiled.available(), "the compiled hot path is not built (make install)"
    from raysim.engine import _hotpath

    rng = np.random.default_rng(seed)

    def ints(n: int, hi: int) -> np.ndarray:
        return rng.integers(0, hi, n).astype(np.int64)

    life = (ints(n_l, 5) + 100, ints(n_l, 8), ints(n_l, 3), ints(n_l, 4), ints(n_l, 2))
    copy = (rng.integers(0, 2, n_m) if copies else np.zeros(n_m)).astype(np.int8)
    msgs = [ints(n_m, 5) + 100, ints(n_m, 8), ints(n_m, 8), ints(n_m, 6) << 32,
            ints(n_m, 3).astype(np.int32), copy, np.zeros(n_m, dtype=bool)]
    timers = (ints(n_t, 5) + 100, ints(n_t, 8), ints(n_t, 9), np.zeros(n_t, dtype=np.int64))
    plain = order_window(200, life, msgs, [None] * n_m, timers, [None] * n_t)
    fast = order_window(200, life, msgs, [None] * n_m, timers, [None] * n_t, _hotpath)
    assert np.array_equal(plain.order, fast.order)
    for a, b in zip(plain.keys, fast.keys, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
