"""Chord lookups: per-lookup tables with the true owner, summaries, traffic, key load.

Typical use::

    from raysim.analysis import chord as rc

    runs = rc.chord_runs("results/chord_path_length")       # + fail_fraction, churn_rate
    look = rc.lookups("results/chord_path_length", runs=runs)  # one row per lookup
    summary = rc.lookup_summary(look, runs)                  # per N: mean, p1, p99 hops …
    rc.fig_hops_vs_n(summary).show()

*Which node is right.* Every lookup is logged by its origin when it ends (observations
``lookup``, ``lookup_latency``, ``lookup_timeouts``; ``peer`` = the node it ended at or -1,
``msg_id`` = the key). Its *true owner* is the successor of the key among the nodes up at
the lookup's end time, reconstructed from the log's lifecycle rows (start, join and recover
bring a node up; crash and leave take it down). :func:`true_owners` does this for all
lookups of a run at once: the lookups are sorted by time, the membership is replayed one
change time at a time, and each stretch of constant membership answers its lookups with
one ``searchsorted`` over the sorted identifiers of the nodes up. With
``members="joined"`` a node that joined counts only once it emitted ``joined`` (its join
protocol finished), so lookups are not blamed for keys of nodes still joining.

A lookup *fails* if it gave up or ended at a node other than the true owner.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from raysim.analysis.load import Where, load_events, load_runs, varying_params
from raysim.analysis.stats import band_of
from raysim.protocols.chord.messages import MAINTENANCE
from raysim.protocols.chord.ring import check_ids, format_finger_tables, placement_ids
from raysim.values.ring import HashRing, key_moves, load_stats

UP_KINDS = {"start": True, "join": True, "recover": True, "crash": False, "leave": False}
LOOKUP_NAMES = ("lookup", "lookup_latency", "lookup_timeouts")
DERIVED = ("fail_fraction", "churn_rate")


# --- runs -----------------------------------------------------------------------------------


def crash_fraction(crashes: Any) -> float:
    """The share of nodes crashed at once by a ``faults.crashes`` value (JSON list or list)."""
    items = json.loads(crashes) if isinstance(crashes, str) else (crashes or [])
    return float(sum(c.get("fraction") or 0.0 for c in items))


def chord_runs(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ok ``chord`` runs, with ``fail_fraction`` (from ``faults.crashes``) and
    ``churn_rate`` (``faults.churn.rate`` under Poisson churn, else 0) added."""
    runs = load_runs(where) if runs is None else runs
    out = runs[runs["protocol"] == "chord"].copy()
    crashes = out["faults.crashes"] if "faults.crashes" in out else pd.Series("[]", out.index)
    out["fail_fraction"] = [crash_fraction(c) for c in crashes]
    if "faults.churn.rate" in out and "faults.churn.model" in out:
        out["churn_rate"] = np.where(out["faults.churn.model"] == "poisson",
                                     out["faults.churn.rate"].astype(float), 0.0)
    else:
        out["churn_rate"] = 0.0
    return out.reset_index(drop=True)


def crash_time(runs: pd.DataFrame) -> int | None:
    """The earliest ``at`` of the runs' ``faults.crashes`` (None if nothing crashes)."""
    times = []
    for v in runs.get("faults.crashes", pd.Series(dtype=object)).dropna():
        items = json.loads(v) if isinstance(v, str) else v
        times += [int(c["at"]) for c in items or [] if c.get("at") is not None]
    return min(times) if times else None


def churn_start(runs: pd.DataFrame) -> int:
    """When churn begins (``faults.churn.start``; the latest over the runs), 0 if unset."""
    if "faults.churn.start" in runs and len(runs):
        return int(runs["faults.churn.start"].fillna(0).max())
    return 0


def axes(runs: pd.DataFrame) -> list[str]:
    """The parameters that vary across ``runs``, with ``faults.crashes`` shown as
    ``fail_fraction`` and Poisson ``faults.churn.rate`` as ``churn_rate``."""
    out = []
    for c in varying_params(runs):
        if c == "faults.churn.model" and "faults.churn.rate" in varying_params(runs):
            continue  # implied by churn_rate
        if c == "faults.crashes":
            out.append("fail_fraction")
        elif c == "faults.churn.rate":
            out.append("churn_rate")
        elif c not in out:
            out.append(c)
    return list(dict.fromkeys(out))


# --- membership and true owners -------------------------------------------------------------


def lifecycle(where: Where, runs: pd.DataFrame) -> pd.DataFrame:
    """Lifecycle rows (run_id, time, node, kind, up) in log order within each time."""
    flt = ds.field("kind").isin(list(UP_KINDS))
    life = load_events(where, ["run_id", "time", "node", "kind"], flt, runs=runs)
    life["kind"] = life["kind"].astype(str)
    life["up"] = life["kind"].map(UP_KINDS).astype(bool)
    return life.sort_values(["run_id", "time"], kind="stable").reset_index(drop=True)


def true_owners(
    ids: np.ndarray,
    change_time: np.ndarray,
    change_node: np.ndarray,
    change_up: np.ndarray,
    time: np.ndarray,
    keys: np.ndarray,
) -> np.ndarray:
    """For each query (``time``, ``keys``): the node whose identifier is the successor of the
    key among the nodes up at that time (after every change at times <= it); -1 if none.

    ``ids[n]`` is node n's identifier; the changes (sorted by time) say node ``change_node``
    goes up (``change_up``) or down at ``change_time``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    alive = np.zeros(len(ids), dtype=bool)  # by rank
    out = np.full(len(time), -1, dtype=np.int64)
    q = np.argsort(time, kind="stable")
    # the number of change rows at or before each query's time
    upto = np.searchsorted(change_time, np.asarray(time)[q], side="right")
    done = 0
    for seg in np.unique(upto):
        if seg > done:
            for t_node, t_up in zip(change_node[done:seg].tolist(), change_up[done:seg].tolist(),
                                    strict=True):
                alive[rank[t_node]] = t_up
            done = int(seg)
        members = np.flatnonzero(alive)
        if not len(members):
            continue
        sel = q[upto == seg]
        live_ids = sorted_ids[members]
        at = np.searchsorted(live_ids, np.asarray(keys)[sel], side="left") % len(members)
        out[sel] = order[members[at]]
    return out


def _m_of(runs: pd.DataFrame, rid: str) -> int:
    row = runs.loc[runs["run_id"] == rid]
    return int(row["protocol.m"].iloc[0]) if "protocol.m" in row else 48


def run_ids(runs: pd.DataFrame, rid: str) -> np.ndarray:
    """Node identifiers of run ``rid`` (int64, indexed by node), as its protocol placed them:
    from the run's resolved configuration (``placement``, ``ids``, ``m``) and seed."""
    row = runs.loc[runs["run_id"] == rid].iloc[0]
    proto = json.loads(row["config"]).get("protocol", {}) if "config" in row else {}
    n = int(row["network.nodes"])
    m = int(proto.get("m", _m_of(runs, rid)))
    ids = placement_ids(n, m, proto.get("placement", "index"), int(row["seed"]), proto.get("ids"))
    return np.asarray(ids, dtype=np.int64)


def up_at(life: pd.DataFrame, nodes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Whether each ``nodes[i]`` is up at ``times[i]`` (after every change at times <= it),
    from one run's lifecycle rows (``time``, ``node``, ``up``; in log order)."""
    nodes, times = np.asarray(nodes, dtype=np.int64), np.asarray(times, dtype=np.int64)
    out = np.zeros(len(nodes), dtype=bool)
    life = life.sort_values("time", kind="stable")
    for node, g in life.groupby("node", sort=True):
        sel = np.flatnonzero(nodes == node)
        if not len(sel):
            continue
        at = np.searchsorted(g["time"].to_numpy(), times[sel], side="right") - 1
        ok = at >= 0
        out[sel[ok]] = g["up"].to_numpy()[at[ok]]
    return out


def lost_keys(
    look: pd.DataFrame, life: pd.DataFrame, runs: pd.DataFrame, replicas: int = 0
) -> np.ndarray:
    """Per lookup: whether its key's data is gone — the paper's failed lookup (Stoica et al.
    2001, §6.3: "the key's node failed", so nothing is left to return).

    A key is stored at time 0 on its owner among the nodes up then and, with ``replicas``
    = r, on that owner's r successors (a replication factor the simulated protocol does not
    implement: this asks what r replicas would have saved). It is lost when every holder is
    down at the lookup's end. Keys moved by joins and graceful leaves are not followed, so
    this is the metric of a simultaneous failure (``chord_failures``), not of churn.
    """
    out = np.zeros(len(look), dtype=bool)
    for rid, idx in look.groupby("run_id").groups.items():
        ids = run_ids(runs, str(rid))
        lf = life[life["run_id"] == rid]
        first = lf[lf["time"] == 0]
        up0 = np.unique(first.loc[first["up"].astype(bool), "node"].to_numpy(dtype=np.int64))
        if not len(up0):
            continue
        ring = up0[np.argsort(ids[up0], kind="stable")]
        sub = look.loc[idx]
        at = np.searchsorted(ids[ring], sub["key"].to_numpy(dtype=np.int64), side="left")
        alive = np.zeros(len(sub), dtype=bool)
        for j in range(min(replicas, len(ring) - 1) + 1):
            holder = ring[(at + j) % len(ring)]
            alive |= up_at(lf, holder, sub["time"].to_numpy())
        out[look.index.get_indexer(idx)] = ~alive
    return out


def lookups(
    where: Where,
    runs: pd.DataFrame | None = None,
    params: Sequence[str] | None = None,
    members: Literal["up", "joined"] = "up",
    replicas: int = 0,
) -> pd.DataFrame:
    """One row per finished lookup of the chord runs.

    Columns: ``run_id``, ``time`` (end), ``start``, ``origin``, ``key``, ``end`` (-1 if it
    gave up), ``hops``, ``latency``, ``timeouts``, ``owner`` (true owner), ``gave_up``,
    ``wrong`` (ended at another node), ``failed`` (either: a *routing* failure), ``lost``
    (the key's data is gone, see :func:`lost_keys`; ``replicas`` = r successors also held
    it), plus ``params`` (default: ``network.nodes`` and the varying parameters, with
    ``fail_fraction`` and ``churn_rate``).
    """
    runs = chord_runs(where) if runs is None else runs
    params = list(dict.fromkeys(["network.nodes", *axes(runs)])) if params is None else list(
        params)
    flt = (ds.field("kind") == "obs") & ds.field("name").isin(list(LOOKUP_NAMES))
    obs = load_events(where, ["run_id", "time", "node", "peer", "msg_id", "name", "value"],
                      flt, runs=runs)
    obs["name"] = obs["name"].astype(str)
    key_cols = ["run_id", "time", "node", "msg_id"]
    wide = obs.pivot_table(index=key_cols, columns="name", values="value", aggfunc="first")
    ends = obs[obs["name"] == "lookup"].set_index(key_cols)["peer"]
    look = pd.DataFrame({
        "hops": wide.get("lookup", pd.Series(dtype=float)),
        "latency": wide.get("lookup_latency", pd.Series(dtype=float)),
        "timeouts": wide.get("lookup_timeouts", pd.Series(dtype=float)),
    }, index=wide.index).join(ends.rename("end")).reset_index()
    look = look.rename(columns={"node": "origin", "msg_id": "key"})
    look["start"] = look["time"] - look["latency"].fillna(0).astype(np.int64)
    look["owner"] = -1
    life = lifecycle(where, runs) if len(look) else pd.DataFrame(columns=["run_id"])
    joined = (_joined(where, runs) if members == "joined" and len(look)
              else pd.DataFrame(columns=["run_id"]))
    for rid, idx in look.groupby("run_id").groups.items():
        ids = run_ids(runs, str(rid))
        lf = life[life["run_id"] == rid]
        if members == "joined":
            lf = _delay_joins(lf, joined[joined["run_id"] == rid])
        sub = look.loc[idx]
        look.loc[idx, "owner"] = true_owners(
            ids, lf["time"].to_numpy(), lf["node"].to_numpy(), lf["up"].to_numpy(),
            sub["time"].to_numpy(), sub["key"].to_numpy())
    look["end"] = look["end"].astype(np.int64)
    look["gave_up"] = look["end"] < 0
    look["wrong"] = ~look["gave_up"] & (look["end"] != look["owner"])
    look["failed"] = look["gave_up"] | look["wrong"]
    look["lost"] = lost_keys(look, life, runs, replicas) if len(look) else False
    cols = ["run_id", "time", "start", "origin", "key", "end", "owner", "hops", "latency",
            "timeouts", "gave_up", "wrong", "failed", "lost"]
    look = look[cols].sort_values(["run_id", "time", "origin"], kind="stable")
    extra = [p for p in params if p in runs.columns]
    if extra:
        look = look.merge(runs[["run_id", *extra]], on="run_id", how="left")
    return look.reset_index(drop=True)


def _joined(where: Where, runs: pd.DataFrame) -> pd.DataFrame:
    flt = (ds.field("kind") == "obs") & (ds.field("name") == "joined")
    return load_events(where, ["run_id", "time", "node"], flt, runs=runs)


def _delay_joins(life: pd.DataFrame, joined: pd.DataFrame) -> pd.DataFrame:
    """Lifecycle rows with a node's up-row moved to its first ``joined`` observation of that
    session, if any (nodes with exact pointers at start never emit it and are not moved)."""
    life = life.sort_values("time", kind="stable").reset_index(drop=True)
    if not len(joined):
        return life
    life["until"] = life.groupby("node")["time"].shift(-1).fillna(np.iinfo(np.int64).max)
    up = life[life["up"]].reset_index()
    done = joined[["time", "node"]].sort_values("time").copy()
    done["joined"] = done["time"]
    match = pd.merge_asof(up, done, on="time", by="node", direction="forward")
    moved = match[match["joined"].notna() & (match["joined"] < match["until"])]
    life.loc[moved["index"].to_numpy(), "time"] = moved["joined"].to_numpy(dtype=np.int64)
    return life.drop(columns="until").sort_values("time", kind="stable")


# --- summaries -----------------------------------------------------------------------------


def lookup_summary(
    look: pd.DataFrame,
    by: Sequence[str] | None = None,
    window: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Per combination of ``by``: hop statistics over all its lookups (pooled over seeds),
    and failure rates as the mean over runs with a 95 % confidence interval.

    ``window = (t0, t1)`` keeps lookups *started* in ``[t0, t1)`` (e.g. after stabilization).
    Columns: ``*by, runs, lookups, hops_mean, hops_p1, hops_p50, hops_p99, timeouts_mean,
    latency_mean, failed, failed_lo, failed_hi, wrong, gave_up, lost, lost_lo, lost_hi``
    (``lost``: the share of lookups whose key's data is gone, NaN without a ``lost`` column).
    """
    by = [c for c in (axes_of(look) if by is None else by)]
    if window is not None:
        look = look[(look["start"] >= window[0]) & (look["start"] < window[1])]
    rows = []
    groups = look.groupby(by, sort=True, dropna=False) if by else [((), look)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cols_ = ["failed", "wrong", "gave_up", *(["lost"] if "lost" in g else [])]
        per_run = g.groupby("run_id")[cols_].mean()
        mean, lo, hi, n = band_of(per_run["failed"].to_numpy(dtype=float))
        lmean, llo, lhi = math.nan, math.nan, math.nan
        if "lost" in per_run:
            lm, ll, lh, _ = band_of(per_run["lost"].to_numpy(dtype=float))
            lmean, llo, lhi = float(lm), float(ll), float(lh)
        ok = g[~g["gave_up"]]["hops"].to_numpy(dtype=float)
        p1, p50, p99 = np.percentile(ok, [1, 50, 99]) if len(ok) else (math.nan,) * 3
        rows.append({
            **dict(zip(by, key, strict=True)), "runs": int(n), "lookups": len(g),
            "hops_mean": float(ok.mean()) if len(ok) else math.nan,
            "hops_p1": float(p1), "hops_p50": float(p50), "hops_p99": float(p99),
            "timeouts_mean": float(g["timeouts"].mean()),
            "latency_mean": float(g["latency"].mean()),
            "failed": float(mean), "failed_lo": float(np.maximum(0.0, lo)), "failed_hi": float(hi),
            "wrong": float(per_run["wrong"].mean()), "gave_up": float(per_run["gave_up"].mean()),
            "lost": float(lmean), "lost_lo": float(np.maximum(0.0, llo)), "lost_hi": float(lhi),
        })
    cols = [*by, "runs", "lookups", "hops_mean", "hops_p1", "hops_p50", "hops_p99",
            "timeouts_mean", "latency_mean", "failed", "failed_lo", "failed_hi", "wrong",
            "gave_up", "lost", "lost_lo", "lost_hi"]
    return pd.DataFrame(rows, columns=cols)


def axes_of(look: pd.DataFrame) -> list[str]:
    """The parameter columns of a lookups table that take more than one value."""
    known = {"run_id", "time", "start", "origin", "key", "end", "owner", "hops", "latency",
             "timeouts", "gave_up", "wrong", "failed", "lost"}
    return [c for c in look.columns if c not in known and look[c].nunique(dropna=False) > 1]


def hop_distribution(look: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Share of (not given up) lookups per hop count: columns ``*by, hops, count, share``."""
    by = axes_of(look) if by is None else list(by)
    ok = look[~look["gave_up"]]
    counts = ok.groupby([*by, "hops"], dropna=False).size().rename("count").reset_index()
    totals = counts.groupby(by, dropna=False)["count"].transform("sum") if by else \
        counts["count"].sum()
    counts["share"] = counts["count"] / totals
    return counts


def half_log2(n: Any) -> Any:
    """½·log₂N, the mean path length Stoica et al. predict."""
    return 0.5 * np.log2(n)


# --- traffic -------------------------------------------------------------------------------


def node_seconds(life: pd.DataFrame, end: int, tick_ms: float = 1.0) -> float:
    """Total time nodes were up during ``[0, end)``, in node-seconds, from lifecycle rows."""
    t = life["time"].to_numpy(dtype=float)
    sign = np.where(life["up"].to_numpy(), 1.0, -1.0)
    return float(np.sum(sign * (end - np.minimum(t, end)))) * tick_ms / 1000.0


def maintenance(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Messages sent per live node per second, by kind of traffic (needs ``log.level="all"``).

    One row per run and kind (``stabilize``, ``notify``, ``check_predecessor``,
    ``fix_fingers``, ``join``, ``leave``, ``keys``, ``lookups``): ``messages`` and
    ``per_node_per_s`` (messages / node-seconds up), plus the runs' axes.
    """
    runs = chord_runs(where) if runs is None else runs
    sends = load_events(where, ["run_id", "msg_type"], ds.field("kind") == "send", runs=runs)
    sends["msg_type"] = sends["msg_type"].astype(str)
    kind_of = {t: k for k, types in MAINTENANCE.items() for t in types}
    sends["traffic"] = sends["msg_type"].map(kind_of).fillna("lookups")
    counts = sends.groupby(["run_id", "traffic"]).size()
    life = lifecycle(where, runs)
    rows = []
    for rd in runs.to_dict("records"):
        rid = rd["run_id"]
        tick = float(rd.get("experiment.tick_ms", 1.0) or 1.0)
        secs = node_seconds(life[life["run_id"] == rid], int(rd["end_time"]), tick)
        for traffic in [*MAINTENANCE, "lookups"]:
            c = int(counts.get((rid, traffic), 0))
            rows.append({"run_id": rid, "traffic": traffic, "messages": c,
                         "per_node_per_s": c / secs if secs else math.nan})
    out = pd.DataFrame(rows, columns=["run_id", "traffic", "messages", "per_node_per_s"])
    extra = [a for a in axes(runs) if a in runs.columns]
    return out.merge(runs[["run_id", *extra]], on="run_id", how="left") if extra else out


def maintenance_summary(maint: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and 95 % interval over runs of messages per node per second, per traffic kind."""
    base = ["run_id", "traffic", "messages", "per_node_per_s"]
    by = [c for c in maint.columns if c not in base] if by is None else list(by)
    rows = []
    for key, g in maint.groupby([*by, "traffic"], sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, lo, hi, n = band_of(g["per_node_per_s"].to_numpy(dtype=float))
        rows.append({**dict(zip([*by, "traffic"], key, strict=True)), "mean": float(mean),
                     "lo": float(lo), "hi": float(hi), "n": int(n)})
    return pd.DataFrame(rows, columns=[*by, "traffic", "mean", "lo", "hi", "n"])


# --- ring state and keys --------------------------------------------------------------------


def ring_correctness(where: Where, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """From ``ring`` snapshots (protocol ``snapshot > 0``): per run and snapshot time, how many
    nodes reported and the share whose successor is the true successor among those nodes."""
    runs = chord_runs(where) if runs is None else runs
    flt = (ds.field("kind") == "obs") & (ds.field("name") == "ring")
    snap = load_events(where, ["run_id", "time", "node", "peer"], flt, runs=runs)
    rows = []
    for (rid, t), g in snap.groupby(["run_id", "time"], sort=True):
        ids = run_ids(runs, str(rid))
        nodes = g["node"].to_numpy()
        order = nodes[np.argsort(ids[nodes])]
        true_succ = dict(zip(order.tolist(), np.roll(order, -1).tolist(), strict=True))
        ok = sum(true_succ[a] == b for a, b in zip(nodes.tolist(), g["peer"].tolist(),
                                                   strict=True))
        rows.append({"run_id": rid, "time": t, "nodes": len(g), "correct": ok / len(g)})
    return pd.DataFrame(rows, columns=["run_id", "time", "nodes", "correct"])


def key_load(
    n_nodes: int = 1024,
    keys_per_node: int = 100,
    vnodes: Sequence[int] = (1, 2, 5, 10, 20),
    replicates: int = 3,
) -> pd.DataFrame:
    """Keys per physical node against virtual nodes per node (the ring toolkit, no run).

    Replicate ``r`` places nodes ``r·N .. r·N + N - 1`` (other labels, other positions) and
    the integer keys ``0 .. keys_per_node·N - 1``. Columns: ``vnodes, replicate, mean,
    p1, p50, p99, max, max_over_mean``.
    """
    keys = np.arange(keys_per_node * n_nodes, dtype=np.int64)
    rows = []
    for v in vnodes:
        for rep in range(replicates):
            ring = HashRing(range(rep * n_nodes, (rep + 1) * n_nodes), vnodes=int(v))
            s = load_stats(ring, keys)
            rows.append({"vnodes": int(v), "replicate": rep, "mean": s.mean, "p1": s.p1,
                         "p50": s.p50, "p99": s.p99, "max": s.max,
                         "max_over_mean": s.max_over_mean})
    return pd.DataFrame(rows)


def keys_moved_on_join(
    n_nodes: int = 1024, keys_per_node: int = 100, joins: int = 10, vnodes: int = 1
) -> pd.DataFrame:
    """Add each of ``joins`` new nodes to a ring of ``n_nodes`` (separately): how many keys
    move, whether all move to the new node, against the expected share 1/(N+1).

    Columns: ``node, moved, fraction, expected, only_to_new, from_owners``.
    """
    keys = np.arange(keys_per_node * n_nodes, dtype=np.int64)
    before = HashRing(range(n_nodes), vnodes=vnodes)
    rows = []
    for j in range(joins):
        new = n_nodes + j
        moves = key_moves(before, before.add_node(new), keys)
        rows.append({"node": new, "moved": len(moves.keys), "fraction": moves.fraction,
                     "expected": 1.0 / (n_nodes + 1),
                     "only_to_new": bool(np.all(moves.new_owners == new)),
                     "from_owners": len(np.unique(moves.old_owners))})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m raysim.analysis.chord load|moves|fingers [--nodes N] [--keys K] [--bits M]
    [--ids 0,1,3] [--key-ids 1,2,6]``: the experiments that need no simulation, as tables:
    keys per node against virtual nodes, keys moved on a join (ring toolkit), the finger
    tables of a small ring (index-hashed, or at the listed identifiers) and which node holds
    each listed key."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("what", choices=["load", "moves", "fingers"])
    ap.add_argument("--nodes", type=int, default=None, help="default 1024 (fingers: 8)")
    ap.add_argument("--keys", type=int, default=100, help="keys per node")
    ap.add_argument("--bits", type=int, default=6, help="fingers: identifier bits m")
    ap.add_argument("--ids", default=None, help="fingers: node identifiers, e.g. 0,1,3")
    ap.add_argument("--key-ids", default=None, help="fingers: key identifiers, e.g. 1,2,6")
    args = ap.parse_args(argv)
    if args.what == "fingers":
        try:
            ids = _int_list(args.ids, "--ids")
            keys = _int_list(args.key_ids, "--key-ids")
            n = len(ids) if ids is not None else (args.nodes or 8)
            if not 1 <= args.bits <= 62:
                raise ValueError(f"--bits {args.bits}: allowed 1..62")
            if ids is not None:
                check_ids(ids, args.bits, n)
            print(format_finger_tables(n, args.bits, ids, keys))
        except ValueError as e:
            print(f"error: fingers: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    args.nodes = args.nodes or 1024
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        if args.what == "load":
            table = key_load(args.nodes, args.keys, replicates=3)
            print(f"{args.nodes} nodes, {args.keys * args.nodes} keys; keys per physical node "
                  "(mean over 3 node placements):")
            print(table.groupby("vnodes")[["mean", "p1", "p50", "p99", "max", "max_over_mean"]]
                  .mean().round(2).to_string())
        else:
            table = keys_moved_on_join(args.nodes, args.keys, joins=10)
            print(f"{args.nodes} nodes, {args.keys * args.nodes} keys; one node joins "
                  f"(10 separate joins); expected share 1/(N+1) = {1 / (args.nodes + 1):.5f}:")
            print(table.to_string(index=False))


def _int_list(text: str | None, flag: str) -> list[int] | None:
    """``"0,1,3"`` → ``[0, 1, 3]``; ValueError naming ``flag`` if it is not such a list."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give comma-separated integers, e.g. 0,1,3") from None


from raysim.analysis.chord_figures import (  # noqa: E402  (figures re-exported here)
    fig_failures,
    fig_hop_distribution,
    fig_hops_vs,
    fig_hops_vs_n,
    fig_key_load,
    fig_key_loss,
    fig_maintenance,
)

__all__ = [
    "axes",
    "chord_runs",
    "churn_start",
    "crash_fraction",
    "crash_time",
    "fig_failures",
    "fig_hop_distribution",
    "fig_hops_vs",
    "fig_hops_vs_n",
    "fig_key_load",
    "fig_key_loss",
    "fig_maintenance",
    "half_log2",
    "hop_distribution",
    "key_load",
    "keys_moved_on_join",
    "lifecycle",
    "lookup_summary",
    "lookups",
    "lost_keys",
    "maintenance",
    "maintenance_summary",
    "node_seconds",
    "ring_correctness",
    "run_ids",
    "true_owners",
    "up_at",
]

if __name__ == "__main__":
    main()
