"""Chord's safety property over a run's event log: lookups on a stable ring end at the owner.

Chord promises a correct answer only once the ring is stable (Stoica et al. 2001, §4.4:
lookups during membership changes may fail or be wrong until stabilization catches up), so
the checkable property is: *a lookup that started at least ``settle`` ticks after the last
membership change, and ended before the next one, and did not give up, ended at the key's
true owner* — the successor of the key among the nodes up during the lookup.

This is a plain function over plain rows (no pandas, no engine), so the protocol family can
ship it; the platform's ``checks`` / ``safety`` hook on the protocol classes calls it once
through :func:`lookup_owner_violations`, which reads the rows out of the event log.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

CHECK = "stable_lookup_owner"


class Violation(NamedTuple):
    """One breach of a safety property: which check, where, when, and what happened."""

    check: str
    node: int
    time: int
    detail: str


def stable_lookup_owner(
    ids: Sequence[int],
    changes: Iterable[tuple[int, int, bool]],
    lookups: Iterable[tuple[int, int, int, int, int]],
    settle: int,
) -> list[Violation]:
    """Violations of :data:`CHECK`.

    ``ids[n]``: node n's identifier; ``changes``: ``(time, node, up)`` membership changes in
    time order (start/join/recover up, crash/leave down); ``lookups``: ``(end_time, origin,
    key, end_node, latency)`` rows (``end_node = -1``: gave up, not checked).
    """
    times: list[int] = []
    states: list[frozenset[int]] = []
    up: set[int] = set()
    for t, node, is_up in changes:
        if is_up:
            up.add(node)
        else:
            up.discard(node)
        if times and times[-1] == t:
            states[-1] = frozenset(up)
        else:
            times.append(t)
            states.append(frozenset(up))
    out: list[Violation] = []
    rings: dict[int, tuple[list[int], list[int]]] = {}  # membership index -> sorted ring
    for end_t, origin, key, end, latency in lookups:
        if end < 0:
            continue
        start = end_t - latency
        i = bisect.bisect_right(times, end_t) - 1  # the membership in force at the end
        if i < 0 or times[i] > start - settle:
            continue  # the ring changed within `settle` before the start, or during it
        if i not in rings:  # NOTE: sorted once per membership, not once per lookup
            ordered = sorted(states[i], key=lambda n: ids[n])
            rings[i] = (ordered, [ids[n] for n in ordered])
        members, pos = rings[i]
        if not members:
            continue
        owner = members[bisect.bisect_left(pos, key) % len(members)]
        if end != owner:
            out.append(Violation(CHECK, origin, end_t,
                                 f"lookup for key {key} ended at node {end}, owner is {owner}"))
    return out


_UP = {"start": True, "join": True, "recover": True, "crash": False, "leave": False}
LIFECYCLE_KINDS = tuple(_UP)  # the membership rows the check reads (with the observations)


def lookup_owner_violations(settle: int, events: Mapping[str, Any]) -> list[Violation]:
    """:func:`stable_lookup_owner` over a run's event log (columns as numpy arrays).

    Node identifiers come from the ``chord_id`` observations (one per session), membership
    from the lifecycle rows, lookups from the ``lookup`` observations (``peer`` = the node
    it ended at, ``ref`` = the key) and their ``lookup_latency`` twins.
    """
    kind, name = events["kind"], events["name"]
    time, node, peer, ref = events["time"], events["node"], events["peer"], events["msg_id"]
    obs = kind == "obs"
    ident = obs & (name == "chord_id")
    if not ident.any():
        return []
    vals = events["value_int"] if "value_int" in events else events["value"]
    ids: dict[int, int] = {}
    for nd, v in zip(node[ident].tolist(), vals[ident].tolist(), strict=True):
        ids[int(nd)] = int(v)
    n = max(ids) + 1
    table = [ids.get(i, -1) for i in range(n)]
    life = np.isin(kind, list(_UP))
    changes = [
        (int(t), int(nd), _UP[k])
        for t, nd, k in zip(time[life].tolist(), node[life].tolist(), kind[life].tolist(),
                            strict=True)
        if nd in ids
    ]
    done = obs & (name == "lookup")
    lat = obs & (name == "lookup_latency")
    latency = {
        (int(t), int(nd), int(k)): int(v)
        for t, nd, k, v in zip(time[lat].tolist(), node[lat].tolist(), ref[lat].tolist(),
                               events["value"][lat].tolist(), strict=True)
    }
    lookups = [
        (int(t), int(nd), int(k), int(e), latency.get((int(t), int(nd), int(k)), 0))
        for t, nd, k, e in zip(time[done].tolist(), node[done].tolist(), ref[done].tolist(),
                               peer[done].tolist(), strict=True)
    ]
    return stable_lookup_owner(table, changes, lookups, settle)


__all__ = [
    "CHECK", "LIFECYCLE_KINDS", "Violation", "lookup_owner_violations", "stable_lookup_owner",
]
