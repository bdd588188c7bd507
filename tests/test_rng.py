"""Counter-based randomness: node streams and per-message decisions are pure functions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from raysim.values.rng import NodeRng, stream_words, uniform_array, words_to_range, words_to_unit


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20), st.integers(1, 2**31))
def test_vectorised_streams_match_the_per_node_stream(keys: list[int], n: int) -> None:
    rngs = [NodeRng(k) for k in keys]
    karr = np.array(keys, dtype=np.uint64)
    for ctr in range(1, 4):
        w = stream_words(karr, np.full(len(keys), ctr))
        expected = [r.next_u64() for r in rngs]
        assert [int(x) for x in w] == expected
        assert words_to_range(w, n).tolist() == [(x * n) >> 64 for x in expected]
        assert words_to_unit(w).tolist() == [(x >> 11) * 2.0**-53 for x in expected]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**62), min_size=2, max_size=200, unique=True), st.randoms())
def test_decisions_do_not_depend_on_batch_order_or_split(ids: list[int], rnd: object) -> None:
    arr = np.array(ids, dtype=np.int64)
    whole = dict(zip(ids, uniform_array(99, arr).tolist(), strict=True))
    shuffled = list(ids)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    half = len(shuffled) // 2
    parts = [np.array(shuffled[:half], dtype=np.int64), np.array(shuffled[half:], dtype=np.int64)]
    for part in parts:
        for i, u in zip(part.tolist(), uniform_array(99, part).tolist(), strict=True):
            assert whole[i] == u


def test_streams_are_uniform_enough() -> None:
    u = uniform_array(7, np.arange(200_000, dtype=np.int64))
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = len(u) / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45  # 19 degrees of freedom, p ≈ 0.001
    r = NodeRng(3)
    draws = [r.randrange(6) for _ in range(6000)]
    assert all(800 < draws.count(i) < 1200 for i in range(6))


def test_different_keys_give_different_streams() -> None:
    a, b = NodeRng(1), NodeRng(2)
    assert [a.next_u64() for _ in range(5)] != [b.next_u64() for _ in range(5)]
    c = NodeRng(5)
    assert sorted(c.sample(list(range(10)), 10)) == list(range(10))
    assert len(set(c.sample(list(range(1000)), 50))) == 50
