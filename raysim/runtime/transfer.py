"""The cost of a message that crosses Ray shards, for ``raysim bench``'s scaling model."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from raysim.network.router import Messages
from raysim.runtime.backends import ensure_ray


def measure_transfer(small: int = 1_000, big: int = 200_000) -> dict[str, Any]:
    """The cost of a message that crosses shards: a batch of columnar messages returned by
    one Ray actor and taken as an argument by another (what a window's cross-shard part
    does), timed at two batch sizes; the per-message cost is the slope."""
    import ray

    ensure_ray()

    def batch(n: int) -> Messages:
        ids = np.arange(n, dtype=np.int64)
        return Messages(ids, ids % 1000, ids % 997, ids, np.zeros(n, np.int16), ["Push"], [],
                        np.zeros(n, np.int8), np.zeros(n, bool),
                        (np.ones(n), np.zeros(n, np.int8)))

    class Source:
        def __init__(self, sizes: list[int]) -> None:
            self.batches = {n: batch(n) for n in sizes}

        def give(self, n: int) -> Messages:
            return self.batches[n]

    class Sink:
        def take(self, b: Messages) -> int:
            return len(b)

    source: Any = ray.remote(num_cpus=0)(Source)
    sink: Any = ray.remote(num_cpus=0)(Sink)
    src, dst = source.remote([small, big]), sink.remote()
    ray.get(dst.take.remote(src.give.remote(small)))  # both actors started
    times = {}
    for n in (small, big):
        reps = 20
        t0 = time.perf_counter()
        ray.get([dst.take.remote(src.give.remote(n)) for _ in range(reps)])
        times[n] = (time.perf_counter() - t0) / reps
    ray.kill(src)
    ray.kill(dst)
    per = (times[big] - times[small]) / (big - small)
    return {"workload": "transfer", "backend": "ray", "messages": big,
            "per_batch_s": round(times[small], 6), "per_message_s": max(per, 0.0)}
