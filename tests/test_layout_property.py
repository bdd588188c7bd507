"""Property: for random fault configurations the log is the same locally and on Ray (1-3 shards).

Hypothesis draws loss, duplication, corruption, jitter, a partition, crashes (with and
without recovery) and churn; each drawn configuration runs on the local backend and on Ray
with 1, 2 and 3 shard actors, for gossip (columnar) and Chord (per node), and the canonical
event logs must be equal. Small on purpose (few examples, tens of nodes, short runs) and
derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raysim.experiments.config import validate
from raysim.experiments.runner import run

from .conftest import canonical

LAYOUTS: list[dict[str, Any]] = [{"backend": "ray", "shards": k} for k in (1, 2, 3)]


@st.composite
def faults(draw: st.DrawFn, nodes: int, duration: int) -> tuple[dict[str, Any], int]:
    """A random fault section for ``nodes`` nodes over ``duration`` ticks, and a jitter."""
    prob = st.sampled_from([0.0, 0.05, 0.2])
    out: dict[str, Any] = {"loss": draw(prob), "duplicate": draw(prob), "corrupt": draw(prob)}
    if draw(st.booleans()):
        lo = draw(st.integers(0, nodes - 2))
        hi = draw(st.integers(lo, nodes - 1))
        start = draw(st.integers(0, duration // 2))
        out["partitions"] = [{"a": f"{lo}-{hi}", "start": start, "end": start + duration // 4,
                              "direction": draw(st.sampled_from(["both", "a_to_b"]))}]
    crashes = []
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(1, duration - 2))
        crash: dict[str, Any] = {"at": at, "nodes": sorted(draw(st.sets(
            st.integers(0, nodes - 1), min_size=1, max_size=3)))}
        if draw(st.booleans()):
            crash["recover_at"] = draw(st.integers(at + 1, duration))
        crashes.append(crash)
    out["crashes"] = crashes
    churn = draw(st.sampled_from(["none", "poisson", "sessions"]))
    if churn == "poisson":
        out["churn"] = {"model": "poisson", "rate": draw(st.sampled_from([1.0, 5.0])),
                        "initial": 0.9}
    elif churn == "sessions":
        out["churn"] = {"model": "sessions", "initial": 0.9,
                        "session": {"dist": "exponential", "mean": duration / 2},
                        "downtime": {"dist": "exponential", "mean": duration / 8}}
    return out, draw(st.sampled_from([0, 7]))


def _config(protocol: str, nodes: int, duration: int, fault: dict[str, Any], jitter: int) -> Any:
    proto: dict[str, Any] = {"period": 200} if protocol.startswith("gossip") else {
        "stabilize": 300, "fix_fingers": 600, "check_predecessor": 300, "lookup_rate": 2.0}
    return validate({
        "experiment": {"name": "prop", "protocol": protocol, "seed": 21, "duration": duration},
        "protocol": proto,
        "network": {"nodes": nodes, "delay": {"dist": "uniform", "low": 10, "high": 60},
                    "jitter": jitter},
        "faults": fault,
    }, "property")


def _log(cfg: Any, out: Path, **layout: Any) -> pd.DataFrame:
    res = run(cfg, out, **layout)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    return canonical(res.events_dir)


SIZES = {"gossip.push_pull": (200, 2000), "chord": (50, 2500)}


@pytest.mark.parametrize("protocol", list(SIZES))
def test_random_faults_give_one_log_on_every_layout(
    protocol: str, ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    nodes, duration = SIZES[protocol]

    @settings(max_examples=2, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(drawn=faults(nodes, duration))
    def check(drawn: tuple[dict[str, Any], int]) -> None:
        fault, jitter = drawn
        cfg = _config(protocol, nodes, duration, fault, jitter)
        out = tmp_path_factory.mktemp("prop")
        reference = _log(cfg, out / "local")
        assert len(reference) > 0
        for layout in LAYOUTS:
            got = _log(cfg, out / f"ray-{layout['shards']}", **layout)
            pd.testing.assert_frame_equal(got, reference, obj=f"{protocol} {layout}")

    check()
