"""The engine's own clocks (``[log] causality``) against the happens-before graph of the log.

The oracle is :mod:`raysim.protocols.causality.oracle`'s graph of the log (program order by
``seq``, message edges from ``send`` to ``deliver`` by ``msg_id``), walked here in plain
Python: an independent computation of what Algorithms 5 and 6 must give on every event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from raysim.analysis.causality import happens_before
from raysim.engine.causality import segmented_max
from raysim.experiments.runner import run
from raysim.protocols.causality import oracle

from .conftest import canonical, make_config

FAULTY = {  # loss, duplication, corruption, crash-recovery, a partition and churn
    "loss": 0.15,
    "duplicate": 0.15,
    "corrupt": 0.05,
    "partitions": [{"start": 1500, "end": 2500, "a": "0-3", "direction": "a_to_b"}],
    "crashes": [{"nodes": [2, 5], "at": 1200, "recover_at": 2600}],
    "churn": {"model": "poisson", "rate": 1.0, "initial": 0.9, "departure": "leave"},
}
PROTOCOLS = ("gossip.reference", "gossip.push_pull")  # per-node, columnar


def _run(tmp: Path, protocol: str, mode: str, nodes: int = 12, **layout: object) -> pd.DataFrame:
    cfg = make_config(
        experiment={"protocol": protocol, "stop_when": None, "duration": 4000},
        protocol={"period": 300},
        network={"nodes": nodes, "delay": {"dist": "uniform", "low": 20, "high": 120}},
        faults=FAULTY,
        log={"causality": mode},
    )
    res = run(cfg, tmp / f"{protocol}-{mode}", **layout)  # type: ignore[arg-type]
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    return canonical(res.events_dir)


def _oracle_lamport(df: pd.DataFrame) -> tuple[oracle.Graph, np.ndarray]:
    """Lamport times by Algorithm 5 over the graph: observations carry, the rest tick."""
    g = oracle.build({c: df[c].to_numpy() for c in ("time", "kind", "node", "msg_id", "seq")})
    kind = df["kind"].to_numpy()[g.rows]
    lam = np.zeros(len(g), dtype=np.int64)
    for e in g.order.tolist():
        prev = lam[g.prev[e]] if g.prev[e] >= 0 else 0
        got = lam[g.parent[e]] if g.parent[e] >= 0 else 0
        lam[e] = max(prev, got) + (kind[e] != "obs")
    return g, lam


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_engine_lamport_equals_algorithm_5_over_the_graph(tmp_path: Path, protocol: str) -> None:
    df = _run(tmp_path, protocol, "lamport")
    kinds = set(df["kind"])
    assert {"deliver", "duplicate", "drop", "crash", "recover", "obs"} <= kinds
    assert "vclock" not in df.columns
    g, expected = _oracle_lamport(df)
    got = df["lamport"].to_numpy()[g.rows]
    assert (got == expected).all()
    assert len(g) > 200 and (g.parent >= 0).sum() > 50  # a real graph, with message edges
    # The network's rows about a send (drops, duplicates) carry the send's clock; rows that
    # arrive without being handled (corrupt, crashed) the node's current one.
    send = df[df["kind"] == "send"].set_index(["node", "seq"])["lamport"]
    net = df[df["kind"].isin(["duplicate"]) | (df["name"].isin(["loss", "partition"]))]
    assert len(net) > 10
    at = list(zip(net["node"], net["seq"], strict=True))
    assert (net["lamport"].to_numpy() == send.loc[at].to_numpy()).all()
    assert (df["lamport"] >= 0).all() and df["lamport"].notna().all()


def test_engine_vector_clocks_meet_the_strong_clock_condition(tmp_path: Path) -> None:
    df = _run(tmp_path, "gossip.reference", "vector", nodes=8)
    hb = happens_before(df)
    ev = hb.events
    ticking = np.flatnonzero(ev["kind"].to_numpy() != "obs")
    assert len(ticking) > 100
    vec = np.stack(df["vclock"].to_numpy()[hb.graph.rows[ticking]])
    assert vec.shape[1] == 8
    le = (vec[:, None, :] <= vec[None, :, :]).all(axis=2)
    lt = le & (vec[:, None, :] < vec[None, :, :]).any(axis=2)  # V(a) < V(b)
    before = hb.before_matrix(ticking)
    assert before.any() and (~before & ~before.T).any()  # both ordered and concurrent pairs
    assert (before == lt).all()
    # In vector mode the Lamport column is tracked too, by the same rule as alone.
    _, lam = _oracle_lamport(df)
    assert (df["lamport"].to_numpy()[hb.graph.rows] == lam).all()


def test_causality_none_adds_no_column(tmp_path: Path) -> None:
    cfg = make_config(network={"nodes": 16})
    res = run(cfg, tmp_path / "none")
    assert res.events_dir is not None
    names = pq.read_schema(next(res.events_dir.glob("*.parquet"))).names
    assert "lamport" not in names and "vclock" not in names
    assert "causality" not in cfg.resolved()["log"]  # and the run_id is what it was


def test_segmented_max_restarts_at_each_segment() -> None:
    v = np.array([3, 1, 4, 0, 2, 7, 1, 5], dtype=np.int64)
    first = np.array([1, 0, 0, 1, 0, 0, 1, 0], dtype=bool)
    assert segmented_max(v, first).tolist() == [3, 3, 4, 0, 2, 7, 1, 5]
    two = segmented_max(np.stack([v, v[::-1]], axis=1), first)
    assert two[:, 1].tolist() == [5, 5, 7, 2, 2, 4, 1, 3]


def test_gossip_vector_1000_nodes_same_log_local_and_ray_2_shards(
    ray_session: None, tmp_path: Path
) -> None:
    def log(**layout: object) -> pd.DataFrame:
        cfg = make_config(
            experiment={"protocol": "gossip.push_pull", "stop_when": None, "duration": 1300},
            protocol={"period": 600},
            network={"nodes": 1000, "delay": {"dist": "uniform", "low": 20, "high": 120}},
            faults={"loss": 0.1, "duplicate": 0.05},
            log={"causality": "vector"},
        )
        res = run(cfg, tmp_path / str(sorted(layout.items())), **layout)  # type: ignore[arg-type]
        assert res.status == "ok", res.error
        assert res.events_dir is not None
        return canonical(res.events_dir)

    local = log(backend="local")
    ray2 = log(backend="ray", shards=2)
    assert len(local) > 3000
    vec = np.stack(local["vclock"].to_numpy())
    assert vec.shape[1] == 1000 and (vec.sum(axis=1) > 1).mean() > 0.5  # news travelled
    plain = [c for c in local.columns if c != "vclock"]
    pd.testing.assert_frame_equal(local[plain], ray2[plain])
    assert (vec == np.stack(ray2["vclock"].to_numpy())).all()


@pytest.mark.parametrize(
    ("protocol", "layout"),
    [("gossip.reference", {"backend": "ray", "shards": 3, "router": "actor"}),
     ("gossip.push_pull", {"backend": "ray", "shard_size": 1})],
    ids=["per-node-router-actor", "columnar-one-actor-per-node"],
)
def test_clocks_are_the_same_under_the_router_actor_and_one_actor_per_node(
    ray_session: None, tmp_path: Path, protocol: str, layout: dict[str, object]
) -> None:
    """The faulty 12-node run's clocks, local against Ray with 3 shards routed by the
    router actor, and against one actor per node (every message crosses a process)."""
    local = _run(tmp_path / "local", protocol, "vector")
    other = _run(tmp_path / "ray", protocol, "vector", **layout)
    plain = [c for c in local.columns if c != "vclock"]
    pd.testing.assert_frame_equal(local[plain], other[plain])
    assert (np.stack(local["vclock"].to_numpy()) == np.stack(other["vclock"].to_numpy())).all()
