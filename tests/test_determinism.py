"""The central promise: same config and seed, same event log, on every backend and layout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from raysim.experiments.runner import run

from .conftest import canonical, make_config

FAULTY = {
    "loss": 0.1,
    "duplicate": 0.1,
    "corrupt": 0.05,
    "partitions": [{"start": 2000, "end": 4000, "a": "0-7", "direction": "a_to_b"}],
    "crashes": [{"nodes": [3, 9], "at": 1500, "recover_at": 3500}, {"node": 12, "at": 2500}],
    "churn": {"model": "poisson", "rate": 1.0, "initial": 0.85, "departure": "leave"},
}

LAYOUTS = {
    "ray-1": {"backend": "ray", "shards": 1},
    "ray-2": {"backend": "ray", "shards": 2},  # transport "auto": the socket mesh
    "ray-4": {"backend": "ray", "shards": 4},
    "ray-2-tasks": {"backend": "ray", "shards": 2, "transport": "tasks"},
    "ray-3-tasks": {"backend": "ray", "shards": 3, "transport": "tasks"},
    "ray-3-mesh": {"backend": "ray", "shards": 3, "transport": "mesh"},
    "ray-2-router-actor": {"backend": "ray", "shards": 2, "router": "actor"},
    "ray-3-router-actor": {"backend": "ray", "shards": 3, "router": "actor"},
}
# Both protocols on every layout; one Ray actor per node (16 actors) for the per-node protocol.
CASES = [
    pytest.param(protocol, layout, id=f"{protocol}-{name}")
    for protocol in ("gossip.push_pull", "gossip.reference", "gossip.average")
    for name, layout in LAYOUTS.items()
] + [
    pytest.param(
        "gossip.reference",
        {"backend": "ray", "shard_size": 1},
        id="gossip.reference-one-actor-per-node",
    )
]


def _log(tmp_path: Path, protocol: str, **layout: object) -> tuple[pd.DataFrame, dict]:
    cfg = make_config(
        experiment={
            "protocol": protocol,
            "stop_when": None if "average" in protocol else "informed",
            "duration": 8000,
        },
        network={"nodes": 16},
        faults=FAULTY,
    )
    res = run(cfg, tmp_path / str(sorted(layout.items())), **layout)  # type: ignore[arg-type]
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    summary = {
        k: res.row[k]
        for k in (
            "end_time",
            "sent",
            "delivered",
            "lost",
            "duplicated",
            "corrupted",
            "dropped_crashed",
            "timers",
            "observations",
        )
    }
    return canonical(res.events_dir), summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pd.DataFrame, dict]]:
    base = tmp_path_factory.mktemp("reference")
    protocols = ("gossip.push_pull", "gossip.reference", "gossip.average")
    return {p: _log(base, p, backend="local") for p in protocols}


@pytest.mark.parametrize(("protocol", "layout"), CASES)
def test_every_layout_writes_the_same_log(
    ray_session: None, reference: dict, tmp_path: Path, protocol: str, layout: dict
) -> None:
    log, summary = _log(tmp_path, protocol, **layout)
    ref_log, ref_summary = reference[protocol]
    assert len(ref_log) > 300  # a run with real traffic and every fault kind
    assert set(ref_log["kind"]) >= {
        "send",
        "deliver",
        "drop",
        "duplicate",
        "corrupt",
        "crash",
        "recover",
    }
    pd.testing.assert_frame_equal(log, ref_log)
    assert summary == ref_summary


def test_the_same_run_twice_is_identical(reference: dict, tmp_path: Path) -> None:
    again, summary = _log(tmp_path, "gossip.push_pull", backend="local")
    ref_log, ref_summary = reference["gossip.push_pull"]
    pd.testing.assert_frame_equal(again, ref_log)
    assert summary == ref_summary


def test_another_seed_gives_another_log(reference: dict, tmp_path: Path) -> None:
    cfg = make_config(
        experiment={"seed": 4, "duration": 8000}, network={"nodes": 16}, faults=FAULTY
    )
    res = run(cfg, tmp_path)
    assert res.events_dir is not None
    other = canonical(res.events_dir)
    assert not other.equals(reference["gossip.push_pull"][0])
