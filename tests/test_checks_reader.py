"""The checks' log reader (``load_events``) and the gossip check's fast path, against the
definitions: a whole-log read sorted by every canonical key, and the plain check on any
row order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raysim.api.protocol import holding
from raysim.experiments import runner
from raysim.experiments.checks import load_events, run_checks
from raysim.log.schema import CANONICAL_SORT, EVENT_SCHEMA
from raysim.protocols.gossip.dissemination import (
    Gossip,
    _member,
    _with_restarts,
    _without_restarts,
    informed_by_delivery,
)

from .conftest import make_config

FAULTS: dict[str, Any] = {
    "loss": 0.2, "duplicate": 0.1, "corrupt": 0.1,
    "crashes": [{"at": 3000, "recover_at": 6000, "fraction": 0.2}],
}
LEAKY = "tests.test_safety:LeakyGossip"  # informed by any message: many violations


def _faulty_run(tmp_path: Path, protocol: str = LEAKY) -> runner.RunResult:
    cfg = make_config(experiment={"protocol": protocol, "stop_when": None, "duration": 12_000},
                      protocol={"mode": "pull"}, faults=FAULTS, network={"nodes": 200})
    res = runner.run(cfg, tmp_path / "run")
    assert res.status == "ok" and res.events_dir is not None
    return res


def _reference(events_dir: Path, kinds: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The definition: every part read whole, rows sorted by all canonical keys (strings by
    their text, null as ""), then only ``kinds``; strings as objects with None."""
    table = pa.concat_tables(pq.read_table(p) for p in sorted(events_dir.glob("*.parquet")))
    table = table.drop([c for c in ("run_id", "vclock") if c in table.column_names])
    if kinds is not None:  # before converting: a column's dtype follows its rows' nulls
        table = table.filter(pc.is_in(table.column("kind"), pa.array(kinds)))
    cols: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_list(col.type) or pa.types.is_string(col.type):
            cols[name] = np.array(col.to_pylist(), dtype=object)
        else:
            cols[name] = col.to_numpy(zero_copy_only=False)

    def key(c: str) -> np.ndarray:
        v = cols[c]
        if v.dtype != object:
            return v
        return np.unique(np.array(["" if x is None else x for x in v], dtype=object),
                         return_inverse=True)[1]

    order = np.lexsort([key(c) for c in reversed(CANONICAL_SORT) if c in cols])
    return {c: v[order] for c, v in cols.items()}


def _same(got: Any, want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for c, v in want.items():
        g = got[c]
        assert g.dtype == v.dtype and g.shape == v.shape, c
        if v.dtype == object:
            assert g.tolist() == v.tolist(), c
        else:
            assert np.array_equal(g, v, equal_nan=v.dtype.kind == "f"), c


def _split(events_dir: Path, out: Path, parts: int, seed: int) -> Path:
    """The same log as ``parts`` part files of shuffled rows in small row groups, each part
    with its own dictionaries (as shards write them); the obs rows in row groups of their
    own, so some row groups hold no obs row at all."""
    table = pq.read_table(events_dir)
    table = table.drop([c for c in ("run_id",) if c in table.column_names])
    rng = np.random.default_rng(seed)
    node = table.column("node").to_numpy()
    out.mkdir(parents=True)
    for i in range(parts):
        t = table.filter(pa.array(node % parts == i))
        t = t.take(pa.array(rng.permutation(len(t))))
        obs = pc.equal(t.column("kind").cast(pa.string()), "obs")
        t = pa.concat_tables([t.filter(pc.invert(obs)), t.filter(obs)])
        # dictionaries rebuilt in this part's row order: other codes than the other parts'
        arrays = [c.cast(pa.string()).dictionary_encode() if pa.types.is_dictionary(c.type)
                  else c for c in t.columns]
        t = pa.Table.from_arrays(arrays, schema=t.schema)
        pq.write_table(t, out / f"part-{i:05d}.parquet", row_group_size=97)
    return out


def test_the_filtered_reader_returns_the_full_readers_rows_of_those_kinds(
    tmp_path: Path,
) -> None:
    res = _faulty_run(tmp_path)
    assert res.events_dir is not None
    full = load_events(res.events_dir)
    _same(full, _reference(res.events_dir))
    kinds_seen = set(full["kind"].tolist())
    assert {"drop", "duplicate", "corrupt", "crash", "recover"} <= kinds_seen  # faulty
    for kinds in (Gossip.log_kinds, ("obs",), ("drop", "duplicate", "recover"), ("nope",)):
        assert kinds is not None
        got = load_events(res.events_dir, kinds=kinds)
        _same(got, _reference(res.events_dir, kinds))
        rows = np.isin(full["kind"], kinds)
        assert len(got["time"]) == rows.sum()
        for c in got:
            assert np.array_equal(got[c], full[c][rows], equal_nan=got[c].dtype != object)


def test_a_log_in_shuffled_parts_reads_and_checks_as_the_runs_own(tmp_path: Path) -> None:
    res = _faulty_run(tmp_path)
    assert res.events_dir is not None
    split = _split(res.events_dir, tmp_path / "split", parts=3, seed=5)
    assert pq.ParquetFile(split / "part-00000.parquet").num_row_groups > 10
    for kinds in (None, Gossip.log_kinds, ("obs",)):
        _same(load_events(split, kinds=kinds), _reference(res.events_dir, kinds))
    cfg = make_config(experiment={"protocol": LEAKY}, protocol={"mode": "pull"})
    spec = cfg.protocol_spec()
    params = spec.make_params(cfg.protocol)
    mine = run_checks(spec, params, res.events_dir, "all")
    theirs = run_checks(spec, params, split, "all")
    assert mine.counts == theirs.counts and mine.counts["informed_by_delivery"] > 0
    assert mine.first == theirs.first
    assert res.row["metric.violations"] == mine.total


def test_string_tests_on_codes_match_the_decoded_columns(tmp_path: Path) -> None:
    """``holding`` reads the runner's string codes (``EventColumns.holds``) and compares a
    plain mapping's values: the same rows either way, on a log whose parts each have their
    own dictionaries, whether or not the column was decoded first."""
    res = _faulty_run(tmp_path)
    assert res.events_dir is not None
    split = _split(res.events_dir, tmp_path / "split", parts=3, seed=7)
    plain = _reference(res.events_dir)
    for name, texts in (("kind", ("send", "deliver")), ("name", ("informed", "crashed")),
                        ("msg_type", ("Rumor", "PullRequest", "absent")), ("kind", ()),
                        ("kind", ("send", "deliver", "obs", "start", "drop"))):  # > 3 texts
        want = np.isin(plain[name], texts)
        assert np.array_equal(holding(plain, name, texts), want), name
        for decoded_first in (False, True):
            events = load_events(split)
            if decoded_first:
                assert events[name].dtype == object
            got = holding(events, name, texts)
            assert got.dtype == bool and np.array_equal(got, want), (name, decoded_first)
            assert np.array_equal(events[name], plain[name])  # decoded as before
    assert 0 < holding(plain, "kind", ("send",)).sum() < len(plain["kind"])
    with pytest.raises(KeyError):
        load_events(split).holds("no_such_column", ("x",))


def test_rows_that_tie_on_time_node_seq_kind_sort_on_the_remaining_keys(
    tmp_path: Path,
) -> None:
    # A hand-made log: (time, node, seq, kind) leave ties that msg_id, peer, msg_type,
    # name and value break (nulls first), written in a scrambled order over two parts.
    rng = np.random.default_rng(11)
    n = 400
    data: dict[str, Any] = {
        "time": rng.integers(0, 3, n), "kind": rng.choice(["send", "drop", "obs"], n),
        "node": rng.integers(0, 2, n), "seq": rng.integers(0, 2, n),
        "cause": np.full(n, -1), "peer": rng.integers(-1, 2, n),
        "msg_id": rng.integers(-1, 2, n),
        "msg_type": rng.choice(np.array(["A", "B", None], dtype=object), n),
        "name": rng.choice(np.array(["x", "", None], dtype=object), n),
        "value": rng.choice([0.5, np.nan, 2.0], n),
    }
    base = pa.table({k: pa.array(v, EVENT_SCHEMA.field(k).type.value_type
                                 if pa.types.is_dictionary(EVENT_SCHEMA.field(k).type)
                                 else EVENT_SCHEMA.field(k).type) for k, v in data.items()})
    base = pa.Table.from_arrays(
        [c.dictionary_encode() if pa.types.is_string(c.type) else c for c in base.columns],
        names=base.column_names)
    out = tmp_path / "events"
    out.mkdir()
    pq.write_table(base.slice(0, 150), out / "part-00000.parquet", row_group_size=40)
    pq.write_table(base.slice(150), out / "part-00001.parquet", row_group_size=64)
    key = np.stack([base.column(c).to_numpy() for c in ("time", "node", "seq")])
    assert len({(*k, s) for k, s in zip(key.T.tolist(), data["kind"], strict=True)}) < n
    _same(load_events(out), _reference(out))
    _same(load_events(out, kinds=("send", "drop")), _reference(out, ("send", "drop")))
    some = load_events(out, columns=())
    assert set(some) == set(CANONICAL_SORT)  # the sort keys, always; `cause` not named


def test_an_empty_or_missing_log_reads_as_empty_columns(tmp_path: Path) -> None:
    none = load_events(tmp_path)
    assert set(none) == set(EVENT_SCHEMA.names) - {"run_id", "vclock"}
    assert all(len(v) == 0 for v in none.values())
    pq.write_table(EVENT_SCHEMA.empty_table(), tmp_path / "part-00000.parquet")
    empty = load_events(tmp_path, kinds=("obs",))
    assert len(empty["time"]) == 0 and empty["kind"].dtype == object
    with pytest.raises(KeyError):
        empty["no_such_column"]


def _plain_informed_by_delivery(source: int, events: Any) -> list[tuple[int, int]]:
    """The check's definition, row by row over a log in canonical order: (time, node) of
    each informed observation with no delivery of a carrier, sent by a node informed at
    the time, since the node last (re)started."""
    informed: set[int] = set()  # nodes informed since their last restart
    delivered: set[int] = set()  # nodes with a good delivery since their last restart
    good: set[int] = set()  # message ids of carriers sent by informed nodes
    out = []
    for t, k, n, name, mtype, mid in zip(
        *(events[c].tolist() for c in ("time", "kind", "node", "name", "msg_type", "msg_id")),
        strict=True,
    ):
        if k in ("start", "recover", "join"):
            informed.discard(n)
            delivered.discard(n)
        elif k == "send" and mtype in ("Rumor", "Exchange", "ExchangeReply") and n in informed:
            good.add(mid)
        elif k == "deliver" and mid in good:
            delivered.add(n)
        elif k == "obs" and name == "informed":
            informed.add(n)
            if n != source and n not in delivered:
                out.append((t, n))
    return out


def test_the_gossip_check_is_its_plain_definition_in_any_row_order(tmp_path: Path) -> None:
    res = _faulty_run(tmp_path)
    assert res.events_dir is not None
    events = load_events(res.events_dir, Gossip.log_columns, Gossip.log_kinds)
    found = [(v.time, v.nodes[0]) for v in informed_by_delivery(0, events)]
    assert found == _plain_informed_by_delivery(0, events)
    assert len(found) == res.row["metric.violations.informed_by_delivery"] > 0
    perm = np.random.default_rng(2).permutation(len(events["time"]))
    shuffled = {c: events[c][perm] for c in events}
    again = [(v.time, v.nodes[0]) for v in informed_by_delivery(0, shuffled)]
    assert again == found  # in (time, node, seq) order, whatever the rows' order
    no_seq = {c: a for c, a in shuffled.items() if c != "seq"}
    assert sorted((v.time, v.nodes[0]) for v in informed_by_delivery(0, no_seq)) == \
        sorted(found)
    # the runner reads this protocol's rows in file order (log_order = "any")
    assert Gossip.log_order == "any"
    unordered = load_events(res.events_dir, Gossip.log_columns, Gossip.log_kinds, ordered=False)
    assert not np.array_equal(unordered["time"], events["time"])
    assert [(v.time, v.nodes[0]) for v in informed_by_delivery(0, unordered)] == found


def test_the_gossip_checks_two_paths_agree(tmp_path: Path) -> None:
    """Without restarts after each node's first event the check needs no sort
    (``_without_restarts``); with them it sorts each node's rows (``_with_restarts``). On
    a log where both apply they find the same rows, and the plain definition's."""
    cfg = make_config(experiment={"protocol": LEAKY, "stop_when": None, "duration": 12_000},
                      protocol={"mode": "push_pull"}, faults={"loss": 0.2},
                      network={"nodes": 300})
    res = runner.run(cfg, tmp_path / "run")
    assert res.status == "ok" and res.events_dir is not None
    events = load_events(res.events_dir, Gossip.log_columns, Gossip.log_kinds, ordered=False)
    cols = {c: np.asarray(events[c]) for c in ("node", "seq", "msg_id")}
    marks = [holding(events, "kind", ("start", "recover", "join")),
             holding(events, "kind", ("obs",)) & holding(events, "name", ("informed",)),
             holding(events, "kind", ("send",))
             & holding(events, "msg_type", ("Rumor", "Exchange", "ExchangeReply")),
             holding(events, "kind", ("deliver",))]
    fast = _without_restarts(0, cols["node"], cols["seq"], cols["msg_id"], *marks)
    assert fast is not None  # no churn: the fast path applies
    slow = _with_restarts(0, cols["node"], cols["seq"], cols["msg_id"], None, *marks)
    assert len(fast) > 0 and np.array_equal(np.sort(fast), slow)
    canonical = load_events(res.events_dir, Gossip.log_columns, Gossip.log_kinds)
    want = _plain_informed_by_delivery(0, canonical)
    assert [(v.time, v.nodes[0]) for v in informed_by_delivery(0, events)] == want
    restarted = marks[0].copy()
    restarted[np.flatnonzero(marks[3])[:5]] = True  # "restarts" in mid-history: no fast path
    assert _without_restarts(0, cols["node"], cols["seq"], cols["msg_id"], restarted,
                             *marks[1:]) is None


def test_the_gossip_check_keeps_each_nodes_history_apart_without_start_rows() -> None:
    # node 0 learns from a delivery, node 1 out of nowhere; neither has a start row, so
    # node 0's delivery must not count for node 1
    rows = [  # time, kind, node, name, msg_type, msg_id
        (0, "obs", 9, "informed", None, -1), (1, "send", 9, None, "Rumor", 100),
        (2, "deliver", 0, None, "Rumor", 100), (2, "obs", 0, "informed", None, -1),
        (3, "obs", 1, "informed", None, -1),
    ]
    cols = ("time", "kind", "node", "name", "msg_type", "msg_id")
    events = {c: np.array([r[i] for r in rows], dtype=object if i in (1, 3, 4) else np.int64)
              for i, c in enumerate(cols)}
    events["seq"] = np.arange(len(rows))
    found = [(v.time, v.nodes[0]) for v in informed_by_delivery(9, events)]
    assert found == _plain_informed_by_delivery(9, events) == [(3, 1)]


@pytest.mark.parametrize("spread", [10, 2**40])
def test_message_id_membership_matches_isin(spread: int) -> None:
    rng = np.random.default_rng(spread % 97)
    src = rng.integers(0, spread, 5000)
    ids = (src << 32) + rng.integers(0, 50, 5000)
    members = ids[rng.random(5000) < 0.3]
    values = np.concatenate([ids, [-1, 0, int(ids.max()) + 1]])
    assert np.array_equal(_member(values, members), np.isin(values, members))
    assert not _member(values, members[:0]).any()
    assert len(_member(values[:0], members)) == 0


def test_the_averaging_check_gives_the_canonical_violations_from_rows_in_file_order(
    tmp_path: Path,
) -> None:
    from raysim.protocols.gossip.averaging import Averaging

    cfg = make_config(experiment={"protocol": "gossip.average", "duration": 5001},
                      network={"nodes": 200},
                      faults={"byzantine": {"nodes": "0-4", "behaviour": "extreme"}})
    res = runner.run(cfg, tmp_path / "run")
    assert res.status == "ok" and res.events_dir is not None
    params = cfg.protocol_spec().make_params(cfg.protocol)
    assert Averaging.log_order == "any"
    found = {}
    for ordered in (True, False):
        events = load_events(res.events_dir, Averaging.log_columns, Averaging.log_kinds,
                             ordered=ordered)
        found[ordered] = [(v.time, v.nodes, v.detail) for v in Averaging.safety(params, events)]
    assert found[True] == found[False] and len(found[True]) > 1
    assert [t for t, *_ in found[False]] == sorted(t for t, *_ in found[False])
    assert res.row["metric.violations"] == len(found[True])
