"""Byzantine nodes at the network layer: who they are, and what they do to what they send.

Theory of operation
-------------------
A :class:`~raysim.network.faults.Byzantine` section names a set of nodes (ids, ranges or a
seeded fraction; :func:`byzantine_mask`) that misbehave from ``start`` to ``end``. Two kinds
of misbehaviour exist, and a run may use both:

* *Protocol-aware*: ``behaviour = "name"`` makes those nodes run an adversary variant of the
  protocol that the protocol itself declares (``Contract.adversaries``; the drivers build the
  Byzantine nodes with it). That is how a node lies about a value or equivocates: only the
  protocol knows what its messages mean.
* *Generic* (this module's :class:`ByzantineFilter`): whatever the protocol, the copies of a
  message a Byzantine node sends are, each with its own probability, dropped (the node stays
  silent towards some peers), delayed by ``delay_ticks``, replayed ``replay_after`` ticks
  later, forged (the receiver sees another node as the sender: impersonation) or
  misdirected (a copy also goes to a node the protocol did not address). ``types`` and
  ``to`` restrict all of them to some message types and destinations (selective silence).

The filter runs inside the router on the copies the network is about to deliver (after the
honest network's loss, partitions, duplication and corruption). Every decision is drawn
from :func:`raysim.values.rng.uniform_array` keyed by (run seed, decision, message id,
copy), so, like every network fault, it is a function of the message's identity alone and
the same on every backend, shard count and router placement. Each decision is logged as a
row of kind ``byzantine`` at the Byzantine node, at the message's send time, with ``name``
= the behaviour (``drop``, ``delay``, ``replay``, ``forge``, ``misdirect``), ``peer`` = the
destination (the new one for ``misdirect``), ``value`` = the extra ticks (``delay``,
``replay``) or the forged sender id (``forge``).

NOTE: a forged copy keeps its ``msg_id`` (the message's identity, which encodes the real
sender); only the ``src`` a handler sees changes. Protocols that authenticate senders would
look at a signature, which raysim does not model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from raysim.log.eventlog import EventLog
from raysim.log.schema import BYZANTINE
from raysim.network.faults import Byzantine, parse_node_set
from raysim.values.rng import derive, uniform_array

# Decision streams (distinct from the router's 0x4C00.. streams).
_MEMBERS, _DROP, _DELAY, _REPLAY, _FORGE, _FORGE_WHO, _MIS, _MIS_WHO = range(0xB200, 0xB208)

REPLAY_COPY = 2  # a replayed copy's ``copy`` is the original's + 2; a misdirected one's + 4
MISDIRECT_COPY = 4

BEHAVIOURS: tuple[str, ...] = ("drop", "delay", "replay", "forge", "misdirect")


def byzantine_mask(b: Byzantine, n_nodes: int, seed: int) -> np.ndarray:
    """A boolean mask of the Byzantine nodes (all False if none is named).

    Raises ``ValueError`` (naming ``faults.byzantine.nodes``) for ids or ranges outside the
    network. A ``fraction`` picks ``round(fraction * n)`` nodes (at least one), seeded by
    the run seed.
    """
    if b.nodes is not None:
        return parse_node_set(b.nodes, n_nodes, "faults.byzantine.nodes")
    mask = np.zeros(n_nodes, dtype=bool)
    if b.fraction is not None:
        h = uniform_array(derive(seed, _MEMBERS), np.arange(n_nodes, dtype=np.int64))
        k = max(1, round(b.fraction * n_nodes))
        mask[np.argsort(h, kind="stable")[:k]] = True
    return mask


def _other(key: int, mid: np.ndarray, copy: np.ndarray, avoid: np.ndarray, n: int) -> np.ndarray:
    """A seeded node id in 0..n-1 other than ``avoid``, per message copy."""
    u = uniform_array(key, mid, copy)
    r = np.minimum((u * (n - 1)).astype(np.int64), n - 2)
    return r + (r >= avoid)


def _concat(parts: list[Any]) -> Any:
    """One message batch of several (same type table), column by column.

    NOTE: written over the dataclass's fields rather than with ``router.concat`` because the
    router imports this module (``raysim.network`` allows no import cycles).
    """
    if len(parts) == 1:
        return parts[0]
    cols: dict[str, Any] = {}
    for f in dataclasses.fields(parts[0]):
        vals = [getattr(p, f.name) for p in parts]
        if isinstance(vals[0], np.ndarray):
            cols[f.name] = np.concatenate(vals)
        elif f.name == "payload":
            cols[f.name] = [x for v in vals for x in v]
        elif f.name == "fields":
            cols[f.name] = tuple(np.concatenate(c) for c in zip(*vals, strict=True))
        else:  # the shared type table
            cols[f.name] = vals[0]
    return type(parts[0])(**cols)


class ByzantineFilter:
    """Applies the generic behaviours of a :class:`Byzantine` section to routed copies."""

    def __init__(self, b: Byzantine, seed: int, n_nodes: int, log: EventLog) -> None:
        self.b = b
        self.n = n_nodes
        self.log = log
        self.mask = byzantine_mask(b, n_nodes, seed)
        self.to = parse_node_set(b.to, n_nodes, "faults.byzantine.to") if b.to else None
        self.end = b.end if b.end is not None else np.iinfo(np.int64).max
        self.keys = {s: derive(seed, s) for s in range(_DROP, _MIS_WHO + 1)}
        self.counts = dict.fromkeys(BEHAVIOURS, 0)

    def apply(self, out: Any, deliv: Any) -> Any:
        """The copies to deliver after the Byzantine senders had their way.

        ``out`` is the raw send batch (for send times and ``seq``), ``deliv`` the copies the
        honest network would deliver (both :class:`raysim.network.router.Messages`).
        """
        b = self.b
        if not b.generic or not self.mask.any() or len(deliv) == 0:
            return deliv
        # Each copy's send time and seq, found from its message id in the raw batch.
        order = np.argsort(out.msg_id, kind="stable")
        pos = order[np.searchsorted(out.msg_id[order], deliv.msg_id)]
        t_send = out.time[pos]
        seq = out.seq[pos] if len(out.seq) == len(out) else np.full(len(pos), -1, np.int64)
        real_src = deliv.src
        hit = self.mask[real_src] & (t_send >= b.start) & (t_send < self.end)
        if b.types:
            names = np.array([x in b.types for x in deliv.type_names], dtype=bool)
            hit &= names[deliv.type_idx] if len(names) else False
        if self.to is not None:
            hit &= self.to[deliv.dst]
        if not hit.any():
            return deliv
        mid, copy = deliv.msg_id, deliv.copy.astype(np.int64)
        log = self.log
        codes = log.strings.codes(deliv.type_names)[deliv.type_idx] if log.messages else None

        def record(mask: np.ndarray, name: str, peer: np.ndarray, value: Any) -> None:
            self.counts[name] += int(mask.sum())
            if codes is not None and mask.any():
                v = value[mask] if isinstance(value, np.ndarray) else value
                log.add(
                    t_send[mask], BYZANTINE, real_src[mask], seq[mask], peer[mask], mid[mask],
                    codes[mask], log.strings.code(name), v,
                )

        def draw(stream: int, p: float) -> np.ndarray:
            if p <= 0:
                return np.zeros(len(mid), dtype=bool)
            return hit & (uniform_array(self.keys[stream], mid, copy) < p)

        dropped = draw(_DROP, b.drop)
        record(dropped, "drop", deliv.dst, np.nan)
        live = hit & ~dropped
        delayed = live & draw(_DELAY, b.delay)
        record(delayed, "delay", deliv.dst, float(b.delay_ticks))
        forged = live & draw(_FORGE, b.forge)
        fake = _other(self.keys[_FORGE_WHO], mid, copy, real_src, self.n)
        record(forged, "forge", deliv.dst, fake.astype(np.float64))
        replayed = live & draw(_REPLAY, b.replay)
        record(replayed, "replay", deliv.dst, float(b.replay_after))
        mis = live & draw(_MIS, b.misdirect)
        where = _other(self.keys[_MIS_WHO], mid, copy, deliv.dst, self.n)
        record(mis, "misdirect", where, np.nan)

        res = deliv.select(np.flatnonzero(~dropped))
        keep = ~dropped
        res.corrupt = deliv.corrupt[keep]
        res.time = deliv.time[keep] + np.where(delayed[keep], b.delay_ticks, 0)
        res.src = np.where(forged[keep], fake[keep], real_src[keep])
        parts = [res]
        base_time = res.time
        if replayed.any():
            ri = np.flatnonzero(replayed[keep])
            extra = res.select(ri)
            extra.corrupt = res.corrupt[ri]
            extra.time = base_time[ri] + b.replay_after
            extra.copy = (res.copy[ri] + REPLAY_COPY).astype(np.int8)
            parts.append(extra)
        if mis.any():
            mi = np.flatnonzero(mis[keep])
            extra = res.select(mi)
            extra.corrupt = res.corrupt[mi]
            extra.dst = where[keep][mi]
            extra.copy = (res.copy[mi] + MISDIRECT_COPY).astype(np.int8)
            parts.append(extra)
        return _concat(parts)

