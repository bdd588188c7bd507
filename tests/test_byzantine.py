"""Byzantine nodes: the fault section, the generic behaviours, adversary variants, layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysim.errors import ConfigError
from raysim.experiments.runner import run
from raysim.network.byzantine import byzantine_mask
from raysim.network.faults import Byzantine

from .conftest import canonical, make_config, rows

GENERIC = {
    "nodes": "0-3",
    "drop": 0.2,
    "delay": 0.2,
    "delay_ticks": 300,
    "replay": 0.2,
    "replay_after": 700,
    "forge": 0.2,
    "misdirect": 0.2,
}


def _cfg(protocol: str = "gossip.push_pull", **byz: object):  # type: ignore[no-untyped-def]
    return make_config(
        experiment={
            "protocol": protocol,
            "stop_when": None if "average" in protocol else "informed",
            "duration": 6000,
        },
        network={"nodes": 16},
        faults={"loss": 0.05, "duplicate": 0.1, "byzantine": byz},
    )


def test_node_sets_list_range_and_seeded_fraction() -> None:
    assert np.flatnonzero(byzantine_mask(Byzantine(nodes=[1, 5]), 8, 0)).tolist() == [1, 5]
    assert np.flatnonzero(byzantine_mask(Byzantine(nodes="2-4"), 8, 0)).tolist() == [2, 3, 4]
    a = byzantine_mask(Byzantine(fraction=0.25), 100, 1)
    assert a.sum() == 25
    assert (a == byzantine_mask(Byzantine(fraction=0.25), 100, 1)).all()
    assert not (a == byzantine_mask(Byzantine(fraction=0.25), 100, 2)).all()
    assert not byzantine_mask(Byzantine(), 8, 0).any()


def test_generic_behaviours_are_logged_and_applied(tmp_path: Path) -> None:
    res = run(_cfg(**GENERIC), tmp_path)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    df = canonical(res.events_dir)
    byz = rows(df, "byzantine")
    assert set(byz["name"]) == {"drop", "delay", "replay", "forge", "misdirect"}
    assert set(byz["node"]) <= {0, 1, 2, 3}  # only the Byzantine nodes misbehave
    # A forged copy reaches its receiver with the forged sender id as the peer.
    forged = byz[byz["name"] == "forge"].iloc[0]
    deliv = df[(df["kind"] == "deliver") & (df["msg_id"] == forged["msg_id"])]
    assert int(forged["value"]) in set(deliv["peer"])
    # A misdirected copy is delivered to a node the sender did not address.
    mis = byz[byz["name"] == "misdirect"].iloc[0]
    got = df[(df["kind"].isin(["deliver", "corrupt"])) & (df["msg_id"] == mis["msg_id"])]
    assert int(mis["peer"]) in set(got["node"])
    # A replayed copy arrives replay_after ticks after the original.
    rep = byz[byz["name"] == "replay"]
    got = df["kind"].isin(["deliver", "corrupt", "drop"]) & df["msg_id"].isin(rep["msg_id"])
    arrivals = df[got]
    assert (arrivals.groupby("msg_id")["time"].agg(lambda t: t.max() - t.min()) >= 700).all()


def test_selective_drop_by_type_and_destination(tmp_path: Path) -> None:
    res = run(_cfg(nodes=[0, 1], drop=1.0, types=["Exchange"], to="8-15"), tmp_path)
    assert res.events_dir is not None
    df = canonical(res.events_dir)
    byz = rows(df, "byzantine")
    assert len(byz) > 0
    assert set(byz["msg_type"]) == {"Exchange"}
    assert byz["peer"].between(8, 15).all()
    assert set(byz["name"]) == {"drop"}
    # Every copy (duplicates too) of those messages is dropped: none arrives.
    arrived = df[df["kind"].isin(["deliver", "corrupt"]) & df["msg_id"].isin(byz["msg_id"])]
    assert len(arrived) == 0
    # Replies and messages to other destinations still flow from the Byzantine nodes.
    sent = df[(df["kind"] == "deliver") & df["peer"].isin([0, 1])]
    assert len(sent) > 0


def test_no_byzantine_section_changes_nothing(tmp_path: Path) -> None:
    a = run(_cfg(), tmp_path / "a")
    b = run(_cfg(nodes="0-3"), tmp_path / "b")  # nodes named, but no behaviour
    assert a.events_dir is not None and b.events_dir is not None
    pd.testing.assert_frame_equal(canonical(a.events_dir), canonical(b.events_dir))


@pytest.mark.parametrize(
    ("byz", "expected"),
    [
        ({"nodes": "0-99"}, "faults.byzantine.nodes: range '0-99' is outside 0..15"),
        ({"nodes": [3, 16]}, "faults.byzantine.nodes: node id 16 is outside 0..15"),
        ({"nodes": "x"}, "faults.byzantine.nodes: cannot read node range"),
        ({"nodes": "0", "to": "20"}, "faults.byzantine.to"),
        ({"nodes": "0", "fraction": 0.1}, "nodes or fraction, not both"),
        ({"nodes": "0", "behaviour": "liar"}, "unknown behaviour 'liar'"),
        ({"nodes": "0", "drop": 2.0}, "faults.byzantine.drop"),
        ({"nodes": "0", "lie": 1}, "faults.byzantine.lie"),
        ({"fraction": 0.0}, "faults.byzantine.fraction"),
        ({"nodes": "0", "drop": 1.0, "types": ["Exchange", "Exchnage"]},
         "faults.byzantine.types: unknown message type 'Exchnage' of 'gossip.push_pull'; "
         "allowed: Rumor, PullRequest, Exchange, ExchangeReply"),
    ],
)
def test_bad_byzantine_sections_are_one_line(byz: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(**byz)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_adversary_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="allowed: extreme, liar"):
        _cfg("gossip.average", nodes="0", behaviour="nope")


def _mean_error(protocol: str, tmp_path: Path, **byz: object) -> tuple[float, pd.DataFrame]:
    res = run(_cfg(protocol, **byz), tmp_path)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    df = canonical(res.events_dir)
    v = rows(df, "obs", "value")
    honest = v[~v["node"].isin([0])]
    last = honest[honest["time"] >= 5000]
    first = v[v["time"] < 1000]
    return float(abs(last["value"].mean() - first["value"].mean())), df


def test_a_liar_pulls_the_honest_estimates_and_both_paths_agree(tmp_path: Path) -> None:
    err_honest, _ = _mean_error("gossip.average", tmp_path / "h")
    err_liar, col = _mean_error("gossip.average", tmp_path / "c", nodes=[0], behaviour="extreme")
    _, ref = _mean_error("gossip.average.reference", tmp_path / "r", nodes=[0], behaviour="extreme")
    assert err_liar > 10 * err_honest
    assert err_liar > 1.0
    pd.testing.assert_frame_equal(col, ref)
    liar = rows(col, "obs", "value")
    assert (liar[liar["node"] == 0]["value"] == 100.0).all()


LAYOUTS = {
    "ray-1": {"backend": "ray", "shards": 1},
    "ray-2": {"backend": "ray", "shards": 2},
    "ray-3": {"backend": "ray", "shards": 3},
    "ray-2-router-actor": {"backend": "ray", "shards": 2, "router": "actor"},
}


@pytest.fixture(scope="module")
def local_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    base = tmp_path_factory.mktemp("byz-local")
    out = {}
    for p, extra in (("gossip.push_pull", {}), ("gossip.average", {"behaviour": "liar"})):
        res = run(_cfg(p, **GENERIC, **extra), base / p)
        assert res.events_dir is not None
        out[p] = canonical(res.events_dir)
    return out


@pytest.mark.parametrize("protocol", ["gossip.push_pull", "gossip.average"])
@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
def test_every_layout_makes_the_same_byzantine_decisions(
    ray_session: None, local_logs: dict, tmp_path: Path, protocol: str, layout: str
) -> None:
    extra = {"behaviour": "liar"} if protocol == "gossip.average" else {}
    res = run(_cfg(protocol, **GENERIC, **extra), tmp_path, **LAYOUTS[layout])  # type: ignore[arg-type]
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    log = canonical(res.events_dir)
    ref = local_logs[protocol]
    assert len(rows(ref, "byzantine")) > 10
    pd.testing.assert_frame_equal(log, ref)


def test_one_forging_replica_breaks_the_quorum_register(tmp_path: Path) -> None:
    from raysim.experiments.config import load

    exp = Path(__file__).resolve().parents[1] / "experiments" / "byzantine_quorum.toml"
    rows_ = []
    for nodes in ("[]", "[0]"):
        res = run(load(exp, [f"faults.byzantine.nodes={nodes}"]), tmp_path / nodes)
        assert res.status == "ok", res.error
        rows_.append(res.row)
    assert rows_[0]["metric.violations"] == 0  # R + W > N and everyone honest: linearizable
    assert rows_[1]["metric.violations.stale_reads"] > 0
    assert "which no write wrote" in rows_[1]["violations"]
