"""Benchmarks of the value-type toolkit: hash-ring placement and vector-clock merges.

Each function runs one workload and returns one flat result row (a dict), for ``raysim
bench``. Timings use ``time.perf_counter``; inputs are deterministic (integer keys
``0 .. keys-1``; clock entries from a seeded numpy generator), so only the timings vary
between runs. Repeated timings report the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from raysim.values.clocks import DenseVectorClock, SparseVectorClock
from raysim.values.ring import HashRing

__all__ = ["bench_ring", "bench_vector_clock_merge"]


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_ring(nodes: int = 10_000, vnodes: int = 20, keys: int = 1_000_000) -> dict[str, Any]:
    """Build a ring of ``nodes`` × ``vnodes`` and place ``keys`` integer keys on it.

    ``build_seconds`` covers hashing every virtual node (SHA-1) and sorting the ring;
    ``lookup_seconds`` covers hashing the keys (vectorised SplitMix64) and the successor
    search. ``max_over_mean`` and ``p99_over_mean`` describe keys per physical node.
    """
    t0 = time.perf_counter()
    ring = HashRing(range(nodes), vnodes=vnodes)
    build = time.perf_counter() - t0
    key_array = np.arange(keys, dtype=np.int64)
    t0 = time.perf_counter()
    owner = ring.owner_indices(key_array)
    lookup = time.perf_counter() - t0
    counts = np.bincount(owner, minlength=nodes)
    mean = keys / nodes
    return {
        "workload": "ring_place",
        "nodes": nodes,
        "vnodes": vnodes,
        "keys": keys,
        "build_seconds": round(build, 4),
        "lookup_seconds": round(lookup, 4),
        "total_seconds": round(build + lookup, 4),
        "keys_per_second": round(keys / lookup),
        "max_over_mean": round(float(counts.max()) / mean, 3),
        "p99_over_mean": round(float(np.percentile(counts, 99)) / mean, 3),
    }


def bench_vector_clock_merge(entries: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Seconds per merge of two ``entries``-process vector clocks, dense and sparse.

    Both clocks have every entry non-zero (the sparse representation's worst case);
    ``sparse_1pct_seconds_per_merge`` repeats the sparse merge with 1 % of the entries
    non-zero, the case the sparse representation is meant for.
    """
    rng = np.random.default_rng(seed)
    a_counts = rng.integers(1, 1000, size=entries, dtype=np.int64)
    b_counts = rng.integers(1, 1000, size=entries, dtype=np.int64)
    dense_a, dense_b = DenseVectorClock(a_counts), DenseVectorClock(b_counts)
    sparse_a, sparse_b = dense_a.to_sparse(), dense_b.to_sparse()
    dense = _median_seconds(lambda: dense_a.merge(dense_b), repeats=200)
    sparse = _median_seconds(lambda: sparse_a.merge(sparse_b), repeats=15)
    few = max(entries // 100, 1)
    thin_a, thin_b = (
        SparseVectorClock(dict.fromkeys(rng.choice(entries, few, replace=False).tolist(), 1))
        for _ in range(2)
    )
    thin = _median_seconds(lambda: thin_a.merge(thin_b), repeats=200)
    return {
        "workload": "vector_clock_merge",
        "entries": entries,
        "dense_seconds_per_merge": round(dense, 7),
        "sparse_seconds_per_merge": round(sparse, 6),
        "sparse_over_dense": round(sparse / dense, 1),
        "sparse_1pct_seconds_per_merge": round(thin, 7),
    }
