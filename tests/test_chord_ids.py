"""Chord identifiers: drawn per run from the seed, or listed; the Chord paper's Fig. 3 ring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raysim.analysis import chord as rc
from raysim.experiments.config import ConfigError, load, validate
from raysim.experiments.runner import run
from raysim.protocols.chord.ring import ideal_ring, placement_ids, seeded_ids

ROOT = Path(__file__).resolve().parents[1]

# Stoica et al., SIGCOMM 2001, Fig. 3(b): nodes 0, 1, 3 on a 3-bit circle, keys 1, 2, 6;
# Fig. 5(a): the same after node 6 joins. identifier -> finger table (successor identifiers
# of start = id + 2^i, i = 0, 1, 2), and key -> identifier of the node that stores it.
FIG3_FINGERS = {0: [1, 3, 0], 1: [3, 3, 0], 3: [0, 0, 0]}
FIG3_KEYS = {1: 1, 2: 3, 6: 0}
FIG5A_FINGERS = {0: [1, 3, 6], 1: [3, 3, 6], 3: [6, 6, 0], 6: [0, 0, 3]}
FIG5A_KEYS = {1: 1, 2: 3, 6: 6}


def _tables(ids: list[int]) -> tuple[dict[int, list[int]], dict[int, int]]:
    ring = ideal_ring(len(ids), 3, ids)
    fingers = {ids[n]: [ids[f] for f in ring.fingers(n)] for n in range(len(ids))}
    keys = {k: ids[ring.successor(k)] for k in (1, 2, 6)}
    return fingers, keys


def test_ideal_ring_reproduces_the_papers_figures() -> None:
    assert _tables([0, 1, 3]) == (FIG3_FINGERS, FIG3_KEYS)
    assert _tables([0, 1, 3, 6]) == (FIG5A_FINGERS, FIG5A_KEYS)


def test_fingers_command_prints_the_papers_tables() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raysim.analysis.chord", "fingers", "--ids", "0,1,3", "--bits",
         "3", "--key-ids", "1,2,6"], capture_output=True, text=True, check=True).stdout
    assert "key -> node (id): 1->1 (1), 2->2 (3), 6->0 (0)" in out
    # node 1 (id 1): starts 2, 3, 5 -> nodes at 3, 3, 0
    block = out.split("\nnode 1 (id 1); predecessor")[1].split("\n\n")[0]
    assert [line.split("(id ")[-1].rstrip(")") for line in block.splitlines()[2:]] == [
        "3", "3", "0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ids", "0,1,1", "--bits", "3"], "nodes 1 and 2 share identifier 1"),
        (["--ids", "0,9", "--bits", "3"], "outside 0..7"),
        (["--nodes", "30", "--bits", "4"], "share identifier"),
        (["--ids", "0,x"], "comma-separated integers"),
    ],
)
def test_fingers_command_rejects_bad_rings_in_one_line(args: list[str], message: str) -> None:
    res = subprocess.run([sys.executable, "-m", "raysim.analysis.chord", "fingers", *args],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr


def test_seeded_ids_are_distinct_and_vary_with_the_seed() -> None:
    a, again, b = seeded_ids(1000, 48, 1), seeded_ids(1000, 48, 1), seeded_ids(1000, 48, 2)
    assert a == again and a != b
    assert len(set(a)) == 1000 and len(set(b)) == 1000
    full = seeded_ids(8, 3, 5)  # a full 3-bit circle: collisions are redrawn
    assert sorted(full) == list(range(8))
    assert placement_ids(8, 3, "seed", 5) == full
    assert placement_ids(3, 3, ids=[0, 1, 3]) == (0, 1, 3)
    with pytest.raises(ValueError, match="fewer than 9 nodes"):
        seeded_ids(9, 3, 0)


def _chord(tmp_path: Path, seed: int, **protocol: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    cfg = validate(
        {
            "experiment": {"name": f"ids{seed}", "protocol": "chord", "seed": seed,
                           "duration": 8000},
            "protocol": {"m": 16, "lookup_rate": 1.0, **protocol},
            "network": {"nodes": 64},
            "log": {"level": "observations"},
        },
        "test",
    )
    res = run(cfg, tmp_path)
    assert res.status == "ok", res.error
    runs = rc.chord_runs(tmp_path / f"ids{seed}")
    return runs, rc.lookups(tmp_path / f"ids{seed}", runs=runs)


def test_each_seed_is_another_ring_and_lookups_agree_with_the_analysis(tmp_path: Path) -> None:
    ids = {}
    for seed in (1, 2):
        runs, look = _chord(tmp_path, seed)
        assert len(look) > 300
        assert not look["failed"].any()  # the analysis places nodes as the protocol did
        ids[seed] = rc.run_ids(runs, runs["run_id"].iloc[0])
        assert tuple(ids[seed].tolist()) == seeded_ids(64, 16, seed)
    assert (ids[1] != ids[2]).any()
    runs, look = _chord(tmp_path, 3, placement="index")
    assert not look["failed"].any()


@pytest.mark.parametrize(
    ("protocol", "nodes", "message"),
    [
        ({"m": 3, "ids": [0, 1, 3, 3]}, 4, "nodes 2 and 3 share identifier 3"),
        ({"m": 3, "ids": [0, 1, 3]}, 4, "ids lists 3 identifiers for 4 nodes"),
        ({"m": 3, "ids": [0, 1, 8, 3]}, 4, "outside 0..7"),
        ({"m": 4, "placement": "index"}, 30, "share identifier"),
        ({"m": 3}, 9, "fewer than network.nodes"),
        ({"m": 3, "ids": [0, 1, 3, 6], "keys": [9]}, 4, "keys: identifier 9"),
    ],
)
def test_colliding_or_bad_ids_are_one_line_config_errors(
    protocol: dict, nodes: int, message: str
) -> None:
    data = {"experiment": {"name": "x", "protocol": "chord", "duration": 1000},
            "protocol": protocol, "network": {"nodes": nodes}}
    with pytest.raises(ConfigError, match=message) as e:
        validate(data, "t.toml")
    assert "\n" not in str(e.value)


def test_cli_rejects_colliding_ids_with_exit_2(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('[experiment]\nname = "bad"\nprotocol = "chord"\nduration = 1000\n'
                    '[protocol]\nm = 3\nids = [0, 5, 5]\n[network]\nnodes = 3\n')
    res = subprocess.run([str(Path(sys.executable).parent / "raysim"), "run", str(toml), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 2
    assert "nodes 1 and 2 share identifier 5" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_paper_fig3_experiment_builds_the_papers_tables(tmp_path: Path, monkeypatch) -> None:
    """experiments/chord_paper_fig3.toml: the ring {0, 1, 3} as in Fig. 3(b) just before
    node 6 joins at 10 s, and Fig. 5(a) once the join has stabilized (40 s)."""
    monkeypatch.chdir(ROOT)
    cfg = load(ROOT / "experiments" / "chord_paper_fig3.toml")
    res = run(cfg, tmp_path)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    df = pd.read_parquet(res.events_dir)
    obs = df[df["kind"] == "obs"]
    ids = [0, 1, 3, 6]
    for t, fingers, keys in ((10_000, FIG3_FINGERS, FIG3_KEYS), (40_000, FIG5A_FINGERS,
                                                                   FIG5A_KEYS)):
        snap = obs[obs["time"] == t]
        got = {}
        for node, g in snap[snap["name"] == "finger"].groupby("node"):
            got[ids[int(node)]] = [ids[int(p)] for p in g.sort_values("value")["peer"]]
        assert got == fingers, t
        held = {ids[int(r.node)]: int(r.value) for r in snap[snap["name"] == "keys"].itertuples()}
        assert held == {i: sum(1 for o in keys.values() if o == i) for i in fingers}, t
    moved = obs[obs["name"] == "keys_moved"]
    # node 6 leaves (its key 6 goes to node 0), then joins and takes key 6 back from node 0
    assert [(int(r.node), int(r.peer), int(r.value)) for r in moved.itertuples()] == [
        (3, 0, 1), (0, 3, 1)]


def test_lookups_under_churn_take_few_hops_and_do_not_wander(tmp_path: Path) -> None:
    """Issue 13: under graceful churn a lookup whose next hop was dead (or still joining)
    fell back on farther candidates and wandered (35 hops to succeed, 6–86 before giving
    up, at N = 256); routed around the dead node via its proposer, every successful lookup
    stays within 2·log₂N hops and none gives up."""
    cfg = validate(
        {
            "experiment": {"name": "churn", "protocol": "chord", "seed": 1, "duration": 90_000},
            "protocol": {"keys_per_node": 10, "lookup_rate": 0.2},
            "network": {"nodes": 256, "delay": {"dist": "uniform", "low": 20, "high": 100}},
            "faults": {"churn": {"model": "poisson", "rate": 1.0, "start": 5000, "end": 80_000,
                                 "departure": "leave"}},
            "log": {"level": "observations"},
        },
        "test",
    )
    res = run(cfg, tmp_path)
    assert res.status == "ok", res.error
    look = rc.lookups(tmp_path / "churn")
    assert len(look) > 3000
    ok = look[~look["gave_up"]]
    assert ok["hops"].max() <= 2 * 8, ok["hops"].max()
    assert look["gave_up"].sum() == 0


def test_safety_check_finds_wrong_endpoints_only_on_a_stable_ring(tmp_path: Path) -> None:
    from raysim.protocols.chord.safety import stable_lookup_owner

    runs, look = _chord(tmp_path, 4)
    ids = rc.run_ids(runs, runs["run_id"].iloc[0])
    changes = [(0, n, True) for n in range(64)]
    rows = [(int(r.time), int(r.origin), int(r.key), int(r.end), int(r.latency))
            for r in look.itertuples()]
    assert stable_lookup_owner(ids, changes, rows, settle=0) == []
    wrong = [(t, o, k, (e + 1) % 64, lat) for t, o, k, e, lat in rows[:5]]
    found = stable_lookup_owner(ids, changes, wrong, settle=0)
    assert [v.time for v in found] == [r[0] for r in wrong]
    # a membership change just before the lookups: not a stable ring, nothing to check
    late = [*changes, (rows[0][0] - 1, 7, False)]
    assert stable_lookup_owner(ids, late, wrong[:1], settle=10_000) == []
