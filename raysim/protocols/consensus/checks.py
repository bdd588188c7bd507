"""Safety checkers over an event log: leaders, leases, logs, commits, a register's history.

A small library for any protocol (the built-in Raft, naive leader and quorum register, or a
user's own): each checker takes the run's event log as ``Mapping[str, numpy array]`` (the
log's columns, as the engine hands them to ``Protocol.safety`` or as
``raysim.analysis.load_events`` reads them) and returns a list of
:class:`raysim.api.protocol.Violation` (check, time, nodes, detail). It
reads only observation rows (``kind == "obs"``) and lifecycle rows (``crash``, ``recover``,
``leave``), which every log level except ``none`` keeps.

The observations (the vocabulary a protocol emits for them)
------------------------------------------------------------
================  ========================  =============  =========  ====================
name              emitted by, when           value          peer       ref
================  ========================  =============  =========  ====================
``leader``        a node that becomes        term           -1         -1
                  leader (naive: term 0)
``step_down``     a leader that stops        term           -1         -1
                  being one
``lease``         a leader that (re)starts   believed end   -1         term
                  believing it holds a       of the lease,
                  read lease                 in true ticks
``entry``         a server appending an      index (1-)     term       command id
                  entry to its log
``truncate``      a server deleting its log  first index    -1         -1
                  from an index on           removed
``commit``        a server learning that an  index          term       command id
                  index is committed
``write``         a client invoking a write  written value  -1         operation id
``read``          a client invoking a read   -1             -1         operation id
``ok``            a client receiving the     value written  -1         operation id
                  response                   or read
================  ========================  =============  =========  ====================

A crash ends a node's leadership and lease (``crash`` and ``leave`` rows); logs are stable
storage and survive it. An operation without ``ok`` is pending: it may or may not have taken
effect. Registers start at 0; written values should be unique (an operation id will do).

The checks
----------
* :func:`election_safety` — at most one node becomes leader per term (Raft, Fig. 3).
* :func:`single_leader` — no two nodes are leader at the same instant: the property a
  protocol *without* terms would need, and the one the naive protocol breaks. Raft does not
  promise it (a deposed leader may still believe it leads an old term), which is why it
  needs terms for safety and leases for local reads.
* :func:`lease_safety` — no two nodes at the same instant believe they hold a valid lease.
* :func:`log_matching` — two logs holding an entry with the same index and term are
  identical up to it. Each node's log is replayed from ``entry``/``truncate``; entry *i*
  gets the chain hash of (hash of entry *i*-1, term, command); the first hash seen for an
  (index, term) must be the only one, ever.
* :func:`leader_completeness` — a leader elected at time *t* holds every entry whose first
  ``commit`` was before *t* (Raft §5.4: a leader's term exceeds that of any entry committed
  before it was elected, so in virtual time the property reads this way).
* :func:`state_machine_safety` — no two different commands are committed at one index.
* :func:`linearizability` — the client-visible history of a register is linearizable
  (Herlihy & Wing 1990). Algorithm: the Wing & Gong (1993) depth-first search for a
  linearization, in the form of Lowe (2017, "Testing for linearizability", CCPE 29) that
  Porcupine uses: a list of call and return entries; at each step the search may linearize
  any operation whose call comes before the first pending return; states already explored
  (the set of linearized operations as a bit set, and the register value) are memoized, so
  equivalent interleavings are searched once. The search stops after ``max_steps`` and
  then reports nothing (inconclusive) rather than a false alarm.
* :func:`stale_reads` — reads that return a value some write had certainly overwritten
  before the read began (a write *w2* invoked after *w* returned, and itself returned
  before the read was invoked); the quorum register's count.

Virtual time has ticks: two events in the same tick are treated as concurrent, so a check
never reports a violation that depends on the order of same-tick events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysim.api.protocol import Violation

Columns = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Obs:
    """The rows of one observation name, in log order (time, then node program order)."""

    time: np.ndarray
    node: np.ndarray
    value: np.ndarray
    peer: np.ndarray
    ref: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def _col(events: Columns, name: str, default: Any = None) -> np.ndarray:
    if name in events:
        return np.asarray(events[name])
    n = len(np.asarray(events["time"]))
    return np.full(n, default)


def _order(events: Columns) -> np.ndarray:
    """Row order: by time, then node, then the node's own sequence (stable otherwise)."""
    time = _col(events, "time").astype(np.int64)
    node = _col(events, "node").astype(np.int64)
    if "seq" in events:
        return np.lexsort((np.asarray(events["seq"]), node, time))
    return np.lexsort((node, time))


def rows_of(events: Columns, name: str) -> Obs:
    """The observation rows named ``name``, ordered by time, node and program order."""
    kind = _col(events, "kind").astype(object)
    names = _col(events, "name").astype(object)
    order = _order(events)
    sel = order[(kind[order] == "obs") & (names[order] == name)]
    return Obs(
        time=_col(events, "time").astype(np.int64)[sel],
        node=_col(events, "node").astype(np.int64)[sel],
        value=_col(events, "value").astype(np.float64)[sel],
        peer=_col(events, "peer", -1).astype(np.int64)[sel],
        ref=_col(events, "msg_id", -1).astype(np.int64)[sel],
    )


def lifecycle_ends(events: Columns) -> dict[int, np.ndarray]:
    """Per node, the sorted times at which it crashed or left (ends leaderships and leases)."""
    kind = _col(events, "kind").astype(object)
    sel = (kind == "crash") | (kind == "leave")
    time = _col(events, "time").astype(np.int64)[sel]
    node = _col(events, "node").astype(np.int64)[sel]
    out: dict[int, np.ndarray] = {}
    for nd in np.unique(node).tolist():
        out[int(nd)] = np.sort(time[node == nd])
    return out


def _end_time(events: Columns) -> int:
    t = _col(events, "time")
    return int(t.max()) + 1 if len(t) else 0


def _first_after(times: np.ndarray | None, t: int, bound: int) -> int:
    """The first of ``times`` at or after ``t`` (strictly after when equal is ambiguous)."""
    if times is None or not len(times):
        return bound
    i = int(np.searchsorted(times, t, side="left"))
    return min(int(times[i]), bound) if i < len(times) else bound


# --- leaders ---------------------------------------------------------------------------------


def election_safety(events: Columns) -> list[Violation]:
    """At most one node becomes leader in each term."""
    rows = rows_of(events, "leader")
    out: list[Violation] = []
    first: dict[int, tuple[int, int]] = {}
    for t, nd, term in zip(
        rows.time.tolist(), rows.node.tolist(), rows.value.tolist(), strict=True
    ):
        term = int(term)
        if term not in first:
            first[term] = (nd, t)
        elif first[term][0] != nd:
            other, t0 = first[term]
            out.append(
                Violation(
                    "election_safety",
                    t,
                    (other, nd),
                    f"term {term}: node {nd} became leader at {t}, node {other} already at {t0}",
                )
            )
    return out


def leader_intervals(events: Columns) -> list[tuple[int, int, int, int]]:
    """``(node, term, start, end)`` of every leadership: from ``leader`` to ``step_down``, a
    crash, a later ``leader`` of the same node, or the end of the log."""
    rows = rows_of(events, "leader")
    downs = rows_of(events, "step_down")
    ends = lifecycle_ends(events)
    bound = _end_time(events)
    down_by: dict[int, np.ndarray] = {
        int(nd): downs.time[downs.node == nd] for nd in np.unique(downs.node).tolist()
    }
    lead_by: dict[int, np.ndarray] = {
        int(nd): rows.time[rows.node == nd] for nd in np.unique(rows.node).tolist()
    }
    out = []
    for t, nd, term in zip(
        rows.time.tolist(), rows.node.tolist(), rows.value.tolist(), strict=True
    ):
        later = lead_by[nd][lead_by[nd] > t]
        end = min(
            _first_after(down_by.get(nd), t, bound),
            _first_after(ends.get(nd), t, bound),
            int(later[0]) if len(later) else bound,
        )
        out.append((nd, int(term), t, end))
    return out


def _overlaps(
    intervals: Sequence[tuple[int, int, int, int]], check: str, what: str
) -> list[Violation]:
    """Pairs of intervals of different nodes that overlap by at least one tick."""
    ivs = sorted((s, e, nd, term) for nd, term, s, e in intervals if e > s)
    out: list[Violation] = []
    active: list[tuple[int, int, int, int]] = []
    for s, e, nd, term in ivs:
        active = [a for a in active if a[1] > s]
        for s2, _e2, nd2, term2 in active:
            if nd2 != nd:
                out.append(
                    Violation(
                        check,
                        s,
                        (nd2, nd),
                        f"node {nd} {what} (term {term}) from {s} while node {nd2} "
                        f"{what} (term {term2}) since {s2}",
                    )
                )
                break
        active.append((s, e, nd, term))
    return out


def single_leader(events: Columns) -> list[Violation]:
    """No two nodes are leader at the same instant (the naive protocol's broken promise)."""
    return _overlaps(leader_intervals(events), "single_leader", "is leader")


def lease_safety(events: Columns) -> list[Violation]:
    """No two nodes believe at the same instant that they hold a valid lease.

    A ``lease`` row at time t with value e means: from t until e (true time) the node
    believes its lease is valid, unless it crashes or steps down first.
    """
    rows = rows_of(events, "lease")
    downs = rows_of(events, "step_down")
    ends = lifecycle_ends(events)
    bound = _end_time(events)
    down_by = {int(nd): downs.time[downs.node == nd] for nd in np.unique(downs.node).tolist()}
    ivs = []
    for t, nd, e, term in zip(
        rows.time.tolist(), rows.node.tolist(), rows.value.tolist(), rows.ref.tolist(), strict=True
    ):
        end = min(
            int(e), _first_after(down_by.get(nd), t, bound), _first_after(ends.get(nd), t, bound)
        )
        ivs.append((nd, term, t, end))
    # merge each node's own renewals so that they are not compared with one another
    return _overlaps(ivs, "lease_safety", "holds a lease")


# --- logs --------------------------------------------------------------------------------------


def _chain(prev: int, term: int, cmd: int) -> int:
    """The hash of a log prefix ending in (term, cmd), given the hash of the prefix before."""
    return hash((prev, term, cmd))  # ints only: independent of PYTHONHASHSEED


def log_matching(events: Columns) -> list[Violation]:
    """Logs with an entry of the same index and term are identical up to that index."""
    kind = _col(events, "kind").astype(object)
    names = _col(events, "name").astype(object)
    order = _order(events)
    sel = order[(kind[order] == "obs") & ((names[order] == "entry") | (names[order] == "truncate"))]
    time = _col(events, "time").astype(np.int64)[sel].tolist()
    node = _col(events, "node").astype(np.int64)[sel].tolist()
    name = names[sel].tolist()
    value = _col(events, "value").astype(np.float64)[sel].tolist()
    peer = _col(events, "peer", -1).astype(np.int64)[sel].tolist()
    ref = _col(events, "msg_id", -1).astype(np.int64)[sel].tolist()
    logs: dict[int, list[int]] = {}
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    out: list[Violation] = []
    for t, nd, nm, v, term, cmd in zip(time, node, name, value, peer, ref, strict=True):
        log = logs.setdefault(nd, [])
        idx = int(v)
        if nm == "truncate":
            del log[idx - 1 :]
            continue
        if idx != len(log) + 1:
            out.append(
                Violation(
                    "log_matching",
                    t,
                    (nd,),
                    f"node {nd} appended index {idx} to a log of {len(log)} entries",
                )
            )
            del log[idx - 1 :]
            while len(log) < idx - 1:
                log.append(hash((-1, nd, len(log))))
        h = _chain(log[-1] if log else 0, term, cmd)
        log.append(h)
        key = (idx, term)
        if key not in seen:
            seen[key] = (h, nd)
        elif seen[key][0] != h:
            other = seen[key][1]
            out.append(
                Violation(
                    "log_matching",
                    t,
                    (other, nd),
                    f"index {idx} term {term}: node {nd}'s log differs from node "
                    f"{other}'s up to it (command {cmd})",
                )
            )
    return out


def leader_completeness(events: Columns) -> list[Violation]:
    """A leader elected at time t holds every entry first committed before t."""
    commits = rows_of(events, "commit")
    first_commit: dict[int, tuple[int, int, int]] = {}  # index -> (time, term, cmd)
    for t, idx, term, cmd in zip(
        commits.time.tolist(),
        commits.value.tolist(),
        commits.peer.tolist(),
        commits.ref.tolist(),
        strict=True,
    ):
        first_commit.setdefault(int(idx), (t, term, cmd))
    leaders = rows_of(events, "leader")
    if not len(leaders) or not first_commit:
        return []
    kind = _col(events, "kind").astype(object)
    names = _col(events, "name").astype(object)
    order = _order(events)
    sel = order[(kind[order] == "obs") & np.isin(names[order], ["entry", "truncate", "leader"])]
    time = _col(events, "time").astype(np.int64)[sel].tolist()
    node = _col(events, "node").astype(np.int64)[sel].tolist()
    name = names[sel].tolist()
    value = _col(events, "value").astype(np.float64)[sel].tolist()
    peer = _col(events, "peer", -1).astype(np.int64)[sel].tolist()
    ref = _col(events, "msg_id", -1).astype(np.int64)[sel].tolist()
    logs: dict[int, list[tuple[int, int]]] = {}
    by_time = sorted((t, i, term, cmd) for i, (t, term, cmd) in first_commit.items())
    out: list[Violation] = []
    for t, nd, nm, v, term, cmd in zip(time, node, name, value, peer, ref, strict=True):
        log = logs.setdefault(nd, [])
        if nm == "truncate":
            del log[int(v) - 1 :]
        elif nm == "entry":
            idx = int(v)
            del log[idx - 1 :]
            log.extend([(-1, -1)] * (idx - 1 - len(log)))
            log.append((term, cmd))
        else:
            for tc, idx, cterm, ccmd in by_time:
                if tc >= t:  # same tick: concurrent, not "before"
                    break
                if idx > len(log) or log[idx - 1] != (cterm, ccmd):
                    out.append(
                        Violation(
                            "leader_completeness",
                            t,
                            (nd,),
                            f"node {nd} became leader of term {int(v)} at {t} without index {idx} "
                            f"(term {cterm}, command {ccmd}) committed at {tc}",
                        )
                    )
                    break
    return out


def state_machine_safety(events: Columns) -> list[Violation]:
    """No two different commands are committed at the same index."""
    rows = rows_of(events, "commit")
    first: dict[int, tuple[int, int]] = {}
    out: list[Violation] = []
    reported: set[int] = set()
    for t, nd, idx, cmd in zip(
        rows.time.tolist(), rows.node.tolist(), rows.value.tolist(), rows.ref.tolist(), strict=True
    ):
        idx = int(idx)
        if idx not in first:
            first[idx] = (cmd, nd)
        elif first[idx][0] != cmd and idx not in reported:
            reported.add(idx)
            out.append(
                Violation(
                    "state_machine_safety",
                    t,
                    (first[idx][1], nd),
                    f"index {idx}: node {nd} committed command {cmd}, node "
                    f"{first[idx][1]} command {first[idx][0]}",
                )
            )
    return out


# --- client histories ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation: invoked at ``call``, answered at ``ret`` (inf if never)."""

    id: int
    client: int
    kind: str  # "read" or "write"
    call: float
    ret: float
    arg: float  # the written value (writes)
    out: float  # the value read (reads; nan if pending)


def history(events: Columns) -> list[Op]:
    """The register operations of a log: ``read``/``write`` invocations joined to ``ok``."""
    oks = rows_of(events, "ok")
    done = {
        ref: (t, v)
        for t, v, ref in zip(oks.time.tolist(), oks.value.tolist(), oks.ref.tolist(), strict=True)
    }
    ops: list[Op] = []
    for kind in ("write", "read"):
        r = rows_of(events, kind)
        for t, nd, v, ref in zip(
            r.time.tolist(), r.node.tolist(), r.value.tolist(), r.ref.tolist(), strict=True
        ):
            ret, out = done.get(ref, (np.inf, np.nan))
            ops.append(Op(ref, nd, kind, float(t), float(ret), float(v), float(out)))
    ops.sort(key=lambda o: (o.call, o.id))
    return ops


def is_linearizable(
    ops: Sequence[Op], initial: float = 0.0, max_steps: int = 1_000_000
) -> bool | None:
    """Whether a register history is linearizable: True, False, or None (search cut off).

    Pending reads are dropped (they constrain nothing); a pending write may take effect at
    any time after its call, or never (it is then linearized after everything else).
    """
    ops = [o for o in ops if not (o.kind == "read" and not np.isfinite(o.ret))]
    n = len(ops)
    if n == 0:
        return True
    # Entries: (time, 0 = call / 1 = return, op index); a return in the same tick as a call
    # sorts after it, so same-tick operations are concurrent.
    entries = sorted(
        [(o.call, 0, i) for i, o in enumerate(ops)] + [(o.ret, 1, i) for i, o in enumerate(ops)]
    )
    m = len(entries)
    # Doubly linked list over slots 1..m (slot 0 = head sentinel).
    nxt = [1] + [k + 2 if k + 1 < m else -1 for k in range(m)]
    prv = [-1, *list(range(m))]
    kind = [0] * (m + 1)
    opi = [0] * (m + 1)
    match = [0] * (m + 1)
    ret_slot = [0] * n
    for k, (_t, is_ret, i) in enumerate(entries):
        kind[k + 1], opi[k + 1] = is_ret, i
        if is_ret:
            ret_slot[i] = k + 1
    for k in range(1, m + 1):
        if kind[k] == 0:
            match[k] = ret_slot[opi[k]]

    def lift(k: int) -> None:
        r = match[k]
        nxt[prv[k]] = nxt[k]
        if nxt[k] != -1:
            prv[nxt[k]] = prv[k]
        nxt[prv[r]] = nxt[r]
        if nxt[r] != -1:
            prv[nxt[r]] = prv[r]

    def unlift(k: int) -> None:
        r = match[k]
        if nxt[r] != -1:
            prv[nxt[r]] = r
        nxt[prv[r]] = r
        if nxt[k] != -1:
            prv[nxt[k]] = k
        nxt[prv[k]] = k

    state = initial
    linearized = 0
    cache: set[tuple[int, float]] = set()
    stack: list[tuple[int, float]] = []
    k = nxt[0]
    steps = 0
    while nxt[0] != -1:
        steps += 1
        if steps > max_steps:
            return None
        if kind[k] == 0:
            o = ops[opi[k]]
            ok = o.kind == "write" or o.out == state
            new_state = o.arg if o.kind == "write" else state
            if ok:
                bits = linearized | (1 << opi[k])
                if (bits, new_state) not in cache:
                    cache.add((bits, new_state))
                    stack.append((k, state))
                    state, linearized = new_state, bits
                    lift(k)
                    k = nxt[0]
                    continue
            k = nxt[k]
        else:  # a return with its operation not yet linearized: backtrack
            if not stack:
                return False
            k, state = stack.pop()
            linearized &= ~(1 << opi[k])
            unlift(k)
            k = nxt[k]
    return True


def linearizability(
    events: Columns, initial: float = 0.0, max_steps: int = 1_000_000
) -> list[Violation]:
    """The client-visible register history is linearizable (one violation if not)."""
    ops = history(events)
    verdict = is_linearizable(ops, initial, max_steps)
    if verdict is False:
        first = min((o.call for o in ops), default=0.0)
        clients = tuple(sorted({o.client for o in ops}))[:8]
        return [
            Violation(
                "linearizability",
                int(first),
                clients,
                f"no linearization of the {len(ops)} register operations exists",
            )
        ]
    return []


def stale_reads(events: Columns, initial: float = 0.0) -> list[Violation]:
    """Reads returning a value that a later, completed write had overwritten before they began."""
    ops = history(events)
    writes = [o for o in ops if o.kind == "write"]
    by_value = {o.arg: o for o in writes}
    done = sorted((o.ret, o.call) for o in writes if np.isfinite(o.ret))
    rets = np.array([r for r, _ in done])
    calls = np.array([c for _, c in done])
    out: list[Violation] = []
    for o in ops:
        if o.kind != "read" or not np.isfinite(o.ret):
            continue
        k = int(np.searchsorted(rets, o.call, side="left"))  # writes returned before the call
        if k == 0:
            continue
        w = by_value.get(o.out)
        w_ret = -np.inf if o.out == initial and w is None else (w.ret if w is not None else None)
        if w_ret is None:
            out.append(
                Violation(
                    "stale_reads",
                    int(o.call),
                    (o.client,),
                    f"read {o.id} returned {o.out}, which no write wrote",
                )
            )
        elif (calls[:k] > w_ret).any():
            out.append(
                Violation(
                    "stale_reads",
                    int(o.call),
                    (o.client,),
                    f"read {o.id} at {int(o.call)} returned {o.out}, overwritten before it began",
                )
            )
    return out


CHECKS = {
    "election_safety": election_safety,
    "single_leader": single_leader,
    "lease_safety": lease_safety,
    "log_matching": log_matching,
    "leader_completeness": leader_completeness,
    "state_machine_safety": state_machine_safety,
    "linearizability": linearizability,
    "stale_reads": stale_reads,
}


def run_checks(events: Columns, names: Sequence[str]) -> list[Violation]:
    """Run the named checks (keys of :data:`CHECKS`) and return all their violations."""
    out: list[Violation] = []
    for name in names:
        out.extend(CHECKS[name](events))
    return out
