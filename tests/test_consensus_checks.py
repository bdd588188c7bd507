"""The safety checkers on hand-made event columns: each catches its violation, passes a good log."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from raysim.protocols.consensus import checks as ck


def cols(*rows: tuple[Any, ...]) -> dict[str, np.ndarray]:
    """Columns from rows ``(time, node, name, value, peer, ref)``; name 'crash' is a crash row."""
    out: dict[str, list[Any]] = {k: [] for k in ("time", "kind", "node", "name", "value", "peer",
                                                  "msg_id")}
    for t, node, name, value, peer, ref in rows:
        life = name in ("crash", "recover", "leave")
        out["time"].append(t)
        out["kind"].append(name if life else "obs")
        out["node"].append(node)
        out["name"].append(None if life else name)
        out["value"].append(value)
        out["peer"].append(peer)
        out["msg_id"].append(ref)
    return {k: np.array(v, dtype=object if k in ("kind", "name") else None) for k, v in out.items()}


def obs(t: int, node: int, name: str, value: float = 1.0, peer: int = -1, ref: int = -1):
    return (t, node, name, value, peer, ref)


def test_election_safety_flags_two_leaders_in_one_term_only() -> None:
    good = cols(obs(10, 0, "leader", 1), obs(50, 1, "leader", 2), obs(90, 1, "leader", 2))
    assert ck.election_safety(good) == []
    bad = cols(obs(10, 0, "leader", 1), obs(12, 2, "leader", 1))
    (v,) = ck.election_safety(bad)
    assert v.check == "election_safety" and v.nodes == (0, 2) and v.time == 12


def test_single_leader_sees_overlap_but_not_a_crash_handover() -> None:
    handover = cols(obs(10, 0, "leader", 0), (40, 0, "crash", 0.0, -1, -1),
                    obs(60, 1, "leader", 0))
    assert ck.single_leader(handover) == []
    stepped = cols(obs(10, 0, "leader", 0), obs(30, 0, "step_down", 0), obs(30, 1, "leader", 0))
    assert ck.single_leader(stepped) == []
    overlap = cols(obs(10, 0, "leader", 0), obs(30, 1, "leader", 0), obs(50, 0, "step_down", 0))
    (v,) = ck.single_leader(overlap)
    assert v.nodes == (0, 1) and v.time == 30


def test_lease_safety_compares_believed_ends() -> None:
    ok = cols(obs(0, 0, "lease", 100, ref=1), obs(100, 1, "lease", 200, ref=2))
    assert ck.lease_safety(ok) == []
    cut = cols(obs(0, 0, "lease", 100, ref=1), (50, 0, "crash", 0.0, -1, -1),
               obs(60, 1, "lease", 200, ref=2))
    assert ck.lease_safety(cut) == []
    bad = cols(obs(0, 0, "lease", 100, ref=1), obs(99, 1, "lease", 200, ref=2))
    (v,) = ck.lease_safety(bad)
    assert v.check == "lease_safety" and v.nodes == (0, 1)


def test_log_matching_replays_appends_and_truncations() -> None:
    good = cols(
        obs(1, 0, "entry", 1, peer=1, ref=7), obs(2, 1, "entry", 1, peer=1, ref=7),
        obs(3, 0, "entry", 2, peer=1, ref=8), obs(4, 1, "entry", 2, peer=2, ref=9),
        obs(5, 1, "truncate", 2), obs(6, 1, "entry", 2, peer=1, ref=8),
    )
    assert ck.log_matching(good) == []
    # same (index 2, term 1) but different index-1 entries underneath
    bad = cols(
        obs(1, 0, "entry", 1, peer=1, ref=7), obs(2, 1, "entry", 1, peer=1, ref=5),
        obs(3, 0, "entry", 2, peer=1, ref=8), obs(4, 1, "entry", 2, peer=1, ref=8),
    )
    v1, v2 = ck.log_matching(bad)
    assert v1.nodes == v2.nodes == (0, 1)
    assert "index 1 term 1" in v1.detail and "index 2 term 1" in v2.detail
    gap = cols(obs(1, 0, "entry", 2, peer=1, ref=7))
    assert [v.check for v in ck.log_matching(gap)] == ["log_matching"]


def test_leader_completeness_needs_committed_entries_in_new_leaders() -> None:
    base = [obs(1, 0, "entry", 1, peer=1, ref=7), obs(2, 1, "entry", 1, peer=1, ref=7),
            obs(3, 0, "commit", 1, peer=1, ref=7)]
    assert ck.leader_completeness(cols(*base, obs(10, 1, "leader", 2))) == []
    (v,) = ck.leader_completeness(cols(*base, obs(10, 2, "leader", 2)))
    assert v.nodes == (2,) and "index 1" in v.detail
    # elected in the same tick as the commit: concurrent, not flagged
    assert ck.leader_completeness(cols(*base, obs(3, 2, "leader", 2))) == []


def test_state_machine_safety_one_command_per_index() -> None:
    assert ck.state_machine_safety(cols(obs(1, 0, "commit", 1, ref=7),
                                        obs(2, 1, "commit", 1, ref=7))) == []
    (v,) = ck.state_machine_safety(cols(obs(1, 0, "commit", 1, ref=7),
                                        obs(2, 1, "commit", 1, ref=8),
                                        obs(3, 2, "commit", 1, ref=9)))
    assert v.nodes == (0, 1)


def op(kind: str, call: float, ret: float, arg: float = -1, out: float = np.nan, i: int = 0):
    return ck.Op(i, 0, kind, call, ret, arg, out)


def test_linearizability_of_small_register_histories() -> None:
    seq = [op("write", 0, 1, 5, i=1), op("read", 2, 3, out=5, i=2)]
    assert ck.is_linearizable(seq) is True
    stale = [op("write", 0, 1, 5, i=1), op("read", 2, 3, out=0, i=2)]
    assert ck.is_linearizable(stale) is False
    # concurrent write: the read may see either value
    conc = [op("write", 0, 10, 5, i=1), op("read", 2, 3, out=0, i=2), op("read", 4, 5, out=5, i=3)]
    assert ck.is_linearizable(conc) is True
    # but not new then old (the write cannot be undone)
    inv = [op("write", 0, 10, 5, i=1), op("read", 2, 3, out=5, i=2), op("read", 4, 5, out=0, i=3)]
    assert ck.is_linearizable(inv) is False
    # a pending write may take effect, or never
    pend = [op("write", 0, np.inf, 5, i=1), op("read", 2, 3, out=5, i=2)]
    assert ck.is_linearizable(pend) is True
    assert ck.is_linearizable([op("write", 0, np.inf, 5, i=1), op("read", 2, 3, out=0, i=2)])
    # two writes then reads in an impossible order
    bad2 = [op("write", 0, 1, 1, i=1), op("write", 2, 3, 2, i=2), op("read", 4, 5, out=1, i=3)]
    assert ck.is_linearizable(bad2) is False
    assert ck.is_linearizable(bad2, max_steps=1) is None


def brute_force(ops: list[ck.Op]) -> bool:
    """Every permutation that respects real-time order, replayed on a register."""
    import itertools

    done = [o for o in ops if not (o.kind == "read" and not np.isfinite(o.ret))]
    for perm in itertools.permutations(done):
        pos = {o.id: k for k, o in enumerate(perm)}
        if any(a.ret < b.call and pos[a.id] > pos[b.id] for a in done for b in done):
            continue
        reg, good = 0.0, True
        for o in perm:
            if o.kind == "write":
                reg = o.arg
            elif o.out != reg:
                good = False
                break
        if good:
            return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_linearizability_agrees_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ops, val = [], 1
    for i in range(6):
        call = float(rng.integers(0, 20))
        ret = call + float(rng.integers(0, 6))
        if rng.random() < 0.5:
            ops.append(op("write", call, ret, val, i=i))
            val += 1
        else:
            ops.append(op("read", call, ret, out=float(rng.integers(0, val)), i=i))
    assert ck.is_linearizable(ops) is brute_force(ops)


def test_history_and_stale_reads_from_columns() -> None:
    log = cols(
        obs(0, 9, "write", 5, ref=1), obs(10, 9, "ok", 5, ref=1),
        obs(20, 9, "write", 6, ref=2), obs(30, 9, "ok", 6, ref=2),
        obs(40, 8, "read", -1, ref=3), obs(50, 8, "ok", 5, ref=3),   # stale: 6 overwrote 5
        obs(25, 7, "read", -1, ref=4), obs(35, 7, "ok", 5, ref=4),   # concurrent with w2: fine
        obs(60, 7, "read", -1, ref=5),                               # pending: ignored
    )
    ops = ck.history(log)
    assert [o.id for o in ops] == [1, 2, 4, 3, 5]
    (v,) = ck.stale_reads(log)
    assert v.nodes == (8,) and v.time == 40
    assert [v.check for v in ck.linearizability(log)] == ["linearizability"]
    fixed = {k: a.copy() for k, a in log.items()}
    fixed["value"][5] = 6
    assert ck.stale_reads(fixed) == [] and ck.linearizability(fixed) == []


def test_run_checks_runs_the_named_checks() -> None:
    bad = cols(obs(10, 0, "leader", 1), obs(12, 2, "leader", 1))
    found = ck.run_checks(bad, ["election_safety", "single_leader", "state_machine_safety"])
    assert sorted(v.check for v in found) == ["election_safety", "single_leader"]


def test_election_measures_count_terms_splits_and_overlap() -> None:
    from raysim.protocols.consensus import measures as ms

    log = cols(
        obs(10, 0, "candidate", 1), obs(20, 0, "leader", 1),
        obs(100, 0, "crash"), obs(260, 1, "candidate", 2), obs(262, 2, "candidate", 2),
        obs(420, 2, "candidate", 3), obs(431, 2, "leader", 3),
    )
    m = ms.raft_metrics(log)
    assert m["election_time"] == 331 and m["elected"] == 1 and m["election_terms"] == 2
    assert m["split_votes"] == 1 and m["terms"] == 3 and m["terms_won"] == 2
    assert m["terms_per_election"] == 1.5 and "ops" not in m
    # a crash of a follower is not an election
    assert np.isnan(ms.raft_metrics(cols(obs(20, 0, "leader", 1), obs(100, 3, "crash"),
                                         obs(200, 1, "leader", 2)))["election_time"])
    naive = ms.naive_metrics(cols(obs(5, 0, "leader", 0), obs(50, 1, "leader", 0),
                                  obs(80, 0, "step_down", 0), obs(90, 2, "step_down", 0)))
    assert naive == {"leader_changes": 2, "leader_nodes": 2, "two_leader_ticks": 30}
