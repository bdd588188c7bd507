"""Counter-based randomness: node streams and per-message decisions are pure functions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from raysim.values import rng
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


def test_the_install_built_the_compiled_uniforms() -> None:
    # `make install` builds it (setup.py); if it did not, the router silently draws in numpy.
    assert rng._compiled is not None


@settings(max_examples=60, deadline=None)
@given(
    key=st.integers(0, 2**64 - 1),
    n=st.integers(0, 300),
    dtypes=st.lists(st.sampled_from(["int64", "int8", "uint8", "uint32", "bool"]), min_size=1,
                    max_size=3),
    constant=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_uniforms_are_the_numpy_ones_bit_for_bit(
    key: int, n: int, dtypes: list[str], constant: bool, seed: int
) -> None:
    gen = np.random.default_rng(seed)
    ids = [gen.integers(-(2**63), 2**63 - 1, n, dtype=np.int64).astype(d) for d in dtypes]
    if constant and len(ids) > 1:  # the numpy path mixes a constant column once
        ids[-1] = np.full(n, ids[-1][0] if n else 0, dtype=ids[-1].dtype)
    fast = uniform_array(key, *ids)
    pure = _pure_uniforms(key, ids)
    assert fast.dtype == pure.dtype == np.float64 and fast.shape == pure.shape
    assert np.array_equal(fast, pure)


def _pure_uniforms(key: int, ids: list[np.ndarray]) -> np.ndarray:
    saved = rng._compiled
    rng._compiled = None
    try:
        return uniform_array(key, *ids)
    finally:
        rng._compiled = saved
