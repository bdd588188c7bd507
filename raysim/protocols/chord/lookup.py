"""Chord's routing half: the routing table, requests with timeouts, find_successor.

:class:`ChordRouting` is the part of :class:`raysim.protocols.chord.protocol.Chord` that routes: the
table of fingers and successors, requests that time out, and ``find_successor`` in both
modes (see the theory of operation in :mod:`raysim.protocols.chord.protocol`). It keeps no state of
its own; the attributes it uses are set by ``Chord.__init__``.

A lookup in progress lives at its origin as a :class:`PendingLookup`; every request a node
sends and expects an answer to (``GetPred``, ``Ping``, a recursive hop, an iterative query
or probe) lives in ``pending`` under a per-node request id, with a ``("timeout", req)``
timer that is cancelled when the answer comes.
"""

from __future__ import annotations

import bisect
import heapq
from typing import Any

from raysim.api.protocol import Context
from raysim.protocols.chord import messages as cm
from raysim.protocols.chord.ring import span

USER, FINGER, JOIN = 0, 1, 2  # a lookup's purpose: index into cm.FAMILIES
NEXT_CANDIDATES = 4  # closer nodes an iterative hop returns


class PendingLookup:
    """A lookup in progress at its origin."""

    __slots__ = ("arg", "avoid", "cands", "final", "hops", "key", "purpose", "requeried", "t0",
                 "timeouts", "timer", "tried", "via")

    def __init__(self, key: int, purpose: int, arg: int, t0: int) -> None:
        self.key, self.purpose, self.arg, self.t0 = key, purpose, arg, t0
        self.hops = self.timeouts = 0
        self.timer = -1  # recursive: the origin's deadline timer
        self.tried: set[int] = set()
        self.cands: list[tuple[int, int]] = []  # iterative: heap of (distance to key, node)
        self.final: list[int] | None = None  # iterative: owner candidates left to probe
        self.via: dict[int, int] = {}  # iterative: candidate -> the node that proposed it
        self.avoid: set[int] = set()  # iterative: candidates skipped as dead
        self.requeried: set[int] = set()  # iterative: nodes asked again with ``avoid``


class ChordRouting:
    """Routing table, timed requests and find_successor (iterative and recursive)."""

    node: int
    p: Any  # ChordParams
    phase: str
    ids: tuple[int, ...]
    id: int
    mask: int
    pred: int | None
    succs: list[int]
    fingers: list[int | None]
    route_d: list[int]
    route_n: list[int]
    suspect: dict[int, int]
    pending: dict[int, tuple[str, int, Any, int]]
    lookups: dict[int, PendingLookup]
    seq: int
    built: tuple[int | None, ...]  # what the routing table was last built from

    # --- table and requests -----------------------------------------------------------------

    def _expect(self, ctx: Context, dst: int, what: str, data: Any) -> int:
        """A new request id for a request to ``dst``, timed out after ``hop_timeout``."""
        self.seq += 1
        req = self.seq
        timer = ctx.set_timer(self.p.hop_timeout, ("timeout", req))
        self.pending[req] = (what, dst, data, timer)
        return req

    def _answered(self, ctx: Context, req: int) -> tuple[str, int, Any, int] | None:
        """The pending request ``req`` (its timer cancelled), or None if it already timed out."""
        rec = self.pending.pop(req, None)
        if rec is not None:
            ctx.cancel_timer(rec[3])
        return rec

    def _suspected(self, node: int, now: int) -> bool:
        until = self.suspect.get(node)
        if until is None:
            return False
        if until <= now:
            del self.suspect[node]
            return False
        return True

    def _rebuild(self) -> None:
        """The routing table: the distinct fingers and the successor, sorted by distance.

        NOTE: a pure function of the fingers and the first successor, so it is rebuilt only
        when one of them changed: of Chord's ~13,000 rebuilds a minute, all but the first
        one per node found the table as it was (a finger refreshed to the node it held)."""
        built = (self.id, self.succs[0] if self.succs else None, *self.fingers)
        if built == self.built:
            return
        self.built = built
        me, mask, ids = self.id, self.mask, self.ids
        nodes = {n for n in self.fingers if n is not None}
        if self.succs:
            nodes.add(self.succs[0])
        nodes.discard(self.node)
        table = sorted((((ids[n] - me - 1) & mask) + 1, n) for n in nodes)
        self.route_d = [d for d, _ in table]
        self.route_n = [n for _, n in table]

    def _forget(self, ctx: Context, node: int) -> None:
        """``node`` did not answer: drop it from every pointer and avoid it for a while."""
        if self.p.suspect_ttl:
            self.suspect[node] = ctx.now + self.p.suspect_ttl
        if node in self.succs:
            self.succs = [s for s in self.succs if s != node]
        if self.pred == node:
            self.pred = None
        if node in self.fingers:
            self.fingers = [None if f == node else f for f in self.fingers]
        self._rebuild()
        if not self.succs and self.route_n:
            # every successor is gone: the nearest finger is the best guess (never the
            # predecessor, which would point the ring backwards for a whole turn)
            self.succs = [self.route_n[0]]
            self._rebuild()

    def _owns_next(self, key: int) -> bool:
        """Whether ``key`` lies in ``(self, successor]`` (the whole circle when alone)."""
        succ = self.succs[0] if self.succs else self.node
        mask = self.mask
        return ((key - self.id - 1) & mask) <= ((self.ids[succ] - self.id - 1) & mask)

    def _preceding(self, key: int, limit: int, avoid: frozenset[int] = frozenset()) -> list[int]:
        """Up to ``limit`` table entries strictly between self and ``key``, closest first,
        leaving out ``avoid``.

        The table holds the fingers and the current successor; once a dead successor is
        forgotten the next one of the successor list takes its place.
        """
        i = bisect.bisect_left(self.route_d, ((key - self.id - 1) & self.mask) + 1)  # span
        if not avoid:
            return self.route_n[max(0, i - limit):i][::-1]
        return [n for n in self.route_n[:i][::-1] if n not in avoid][:limit]

    # --- starting and ending lookups --------------------------------------------------------

    def _lookup(self, ctx: Context, key: int, purpose: int, arg: int = -1, via: int = -1) -> None:
        """Start find_successor(key); ``via``: ask that node first (a join has no table)."""
        self.seq += 1
        lid = self.seq
        lk = PendingLookup(key, purpose, arg, ctx.now)
        self.lookups[lid] = lk
        fam = cm.FAMILIES[purpose]
        if self.p.mode == "iterative":
            if via >= 0:
                lk.cands = [(0, via)]
            elif self._owns_next(key):
                lk.final = list(self.succs) or [self.node]
            else:
                for c in self._preceding(key, self.p.max_retries + 1):
                    heapq.heappush(lk.cands, (span(self.ids[c], key, self.mask), c))
            self._iter_step(ctx, lid, lk)
            return
        lk.timer = ctx.set_timer(self.p.lookup_deadline, ("deadline", lid))
        msg = fam.Lookup(-1, lid, self.node, key, 0, 0, False)
        if via >= 0:
            req = self._expect(ctx, via, "hop", msg)
            ctx.send(via, msg._replace(req=req))
        else:
            self._route(ctx, msg, purpose)

    def _finish(self, ctx: Context, lk: PendingLookup, end: int) -> None:
        """The lookup ended at ``end`` (-1: it gave up); log it or use its answer."""
        if lk.purpose == USER:
            key, t = lk.key, lk.t0
            ctx.emit("lookup", float(lk.hops), peer=end, ref=key)
            ctx.emit("lookup_latency", float(ctx.now - t), peer=end, ref=key)
            ctx.emit("lookup_timeouts", float(lk.timeouts), peer=end, ref=key)
        else:
            self._completed(ctx, lk, end)

    def _completed(self, ctx: Context, lk: PendingLookup, end: int) -> None:
        """A fix_fingers or join lookup ended (implemented by the protocol)."""
        raise NotImplementedError

    def _gave_up(self, ctx: Context, lid: int, timeouts: int) -> None:
        lk = self.lookups.pop(lid, None)
        if lk is not None:
            if lk.timer >= 0:
                ctx.cancel_timer(lk.timer)
            lk.timeouts = max(lk.timeouts, timeouts)
            self._finish(ctx, lk, -1)

    def _on_timeout(self, ctx: Context, req: int) -> None:
        rec = self.pending.pop(req, None)
        if rec is None:
            return
        what, dst, data, _ = rec
        self._forget(ctx, dst)
        if what == "stabilize":
            self._stabilize(ctx)  # try the next successor at once
        elif what in ("query", "probe"):
            lid = data
            lk = self.lookups.get(lid)
            if lk is not None:
                lk.timeouts += 1
                if lk.timeouts > self.p.max_retries:
                    self._gave_up(ctx, lid, lk.timeouts)
                elif what == "probe" or not self._route_around(ctx, lid, lk, dst):
                    self._iter_step(ctx, lid, lk)
        elif what == "hop":
            msg = data._replace(timeouts=data.timeouts + 1)
            purpose = cm.FAMILY_INDEX[type(msg)]
            if msg.timeouts > self.p.max_retries or self.phase != "active":
                if msg.origin == self.node:
                    self._gave_up(ctx, msg.lid, msg.timeouts)
                else:
                    ctx.send(msg.origin, cm.FAMILIES[purpose].Failed(msg.lid, msg.timeouts))
            else:
                self._route(ctx, msg, purpose)  # around the dead hop, with the updated table

    def _stabilize(self, ctx: Context) -> None:
        """Implemented by the protocol."""
        raise NotImplementedError

    # --- iterative --------------------------------------------------------------------------

    def _iter_step(self, ctx: Context, lid: int, lk: PendingLookup) -> None:
        """Ask the best untried candidate, or probe the next owner candidate; else give up."""
        fam, now = cm.FAMILIES[lk.purpose], ctx.now
        if lk.final is not None:
            while lk.final:
                s = lk.final.pop(0)
                if s == self.node or (lk.purpose == FINGER and not self._suspected(s, now)):
                    del self.lookups[lid]  # a finger needs the owner's name only, not a visit
                    self._finish(ctx, lk, s)
                    return
                if not self._suspected(s, now):
                    ctx.send(s, fam.Probe(self._expect(ctx, s, "probe", lid)))
                    return
        else:
            while lk.cands:
                _, c = heapq.heappop(lk.cands)
                if c in lk.tried or c == self.node:
                    continue
                if c in self.suspect and self._suspected(c, now):
                    if self._route_around(ctx, lid, lk, c):
                        return
                    continue
                lk.tried.add(c)
                avoid = tuple(sorted(lk.avoid)) if lk.avoid else ()
                ctx.send(c, fam.Query(self._expect(ctx, c, "query", lid), lk.key, avoid))
                return
        self._gave_up(ctx, lid, lk.timeouts)

    def _route_around(self, ctx: Context, lid: int, lk: PendingLookup, dead: int) -> bool:
        """The candidate ``dead`` is dead: ask the node that proposed it again, naming what
        to avoid; False if there is none to ask (the caller goes on with other candidates).

        NOTE: falling back on farther candidates instead, as this lookup once did, makes it
        wander: their answers lead back to the same dead node, and under churn lookups took
        dozens of hops (up to 86 in ``chord_keys``). The proposer routes around the dead node
        with its successor list, as Chord's predecessor of a failed node does.
        """
        lk.avoid.add(dead)
        p = lk.via.get(dead, -1)
        if p < 0 or p in lk.requeried or self._suspected(p, ctx.now):
            return False
        lk.requeried.add(p)
        fam = cm.FAMILIES[lk.purpose]
        ctx.send(p, fam.Query(self._expect(ctx, p, "query", lid), lk.key, tuple(sorted(lk.avoid))))
        return True

    def _on_query(self, ctx: Context, src: int, msg: cm.Query, fam: int) -> None:
        f = cm.FAMILIES[fam]
        if msg.avoid:  # route around the nodes the asker found dead
            avoid = frozenset(msg.avoid)
            live = [s for s in self.succs if s not in avoid]
            mask, key = self.mask, msg.key
            if live and ((key - self.id - 1) & mask) <= ((self.ids[live[0]] - self.id - 1) & mask):
                ctx.send(src, f.Done(msg.req, tuple(live)))
            else:
                here = span(self.id, key, mask)
                near = [s for s in live if span(self.ids[s], key, mask) < here][::-1]
                cands = list(dict.fromkeys(self._preceding(key, NEXT_CANDIDATES, avoid) + near))
                ctx.send(src, f.Next(msg.req, tuple(cands[:NEXT_CANDIDATES])))
        elif self._owns_next(msg.key):
            ctx.send(src, f.Done(msg.req, tuple(self.succs) or (self.node,)))
        else:
            ctx.send(src, f.Next(msg.req, tuple(self._preceding(msg.key, NEXT_CANDIDATES))))

    def _iter_lookup(self, ctx: Context, req: int) -> tuple[int, PendingLookup] | None:
        rec = self._answered(ctx, req)
        if rec is None:
            return None
        lk = self.lookups.get(rec[2])
        return None if lk is None else (rec[2], lk)

    def _on_next(self, ctx: Context, src: int, msg: cm.Next, fam: int) -> None:
        got = self._iter_lookup(ctx, msg.req)
        if got is None:
            return
        lid, lk = got
        lk.hops += 1
        ids, mask, key, tried, cands, via = self.ids, self.mask, lk.key, lk.tried, lk.cands, lk.via
        here = ((key - ids[src] - 1) & mask) + 1  # span(ids[src], key, mask), inlined
        for c in msg.nodes:
            d = ((key - ids[c] - 1) & mask) + 1
            if d < here and c not in tried:  # only strictly closer nodes: no cycles
                heapq.heappush(cands, (d, c))
                via.setdefault(c, src)
        self._iter_step(ctx, lid, lk)

    def _on_done(self, ctx: Context, src: int, msg: cm.Done, fam: int) -> None:
        got = self._iter_lookup(ctx, msg.req)
        if got is None:
            return
        lid, lk = got
        lk.hops += 1
        lk.final = list(msg.succs)
        self._iter_step(ctx, lid, lk)

    def _on_probe(self, ctx: Context, src: int, msg: cm.Probe, fam: int) -> None:
        ctx.send(src, cm.FAMILIES[fam].Alive(msg.req))

    def _on_alive(self, ctx: Context, src: int, msg: cm.Alive, fam: int) -> None:
        got = self._iter_lookup(ctx, msg.req)
        if got is not None:
            del self.lookups[got[0]]
            self._finish(ctx, got[1], src)

    # --- recursive --------------------------------------------------------------------------

    def _route(self, ctx: Context, msg: Any, purpose: int) -> None:
        """One recursive step at this node: answer the origin, or forward closer."""
        if msg.final or not self.succs:
            self._answer(ctx, msg, purpose, self.node)
            return
        if self._owns_next(msg.key):
            if purpose == FINGER:  # a finger needs the owner's name only, not a visit
                self._answer(ctx, msg, purpose, self.succs[0])
                return
            nxt, out = self.succs[0], msg._replace(final=True)
        else:
            nxt, out = self._preceding(msg.key, 1)[0], msg._replace(hops=msg.hops + 1)
        req = self._expect(ctx, nxt, "hop", msg)
        ctx.send(nxt, out._replace(req=req))

    def _answer(self, ctx: Context, msg: Any, purpose: int, owner: int) -> None:
        if msg.origin != self.node:
            fam = cm.FAMILIES[purpose]
            ctx.send(msg.origin, fam.Found(msg.lid, owner, msg.hops, msg.timeouts))
            return
        lk = self.lookups.pop(msg.lid, None)
        if lk is not None:
            ctx.cancel_timer(lk.timer)
            lk.hops, lk.timeouts = msg.hops, msg.timeouts
            self._finish(ctx, lk, owner)

    def _on_lookup(self, ctx: Context, src: int, msg: cm.Lookup, fam: int) -> None:
        ctx.send(src, cm.FAMILIES[fam].Ack(msg.req))
        self._route(ctx, msg, fam)

    def _on_found(self, ctx: Context, src: int, msg: cm.Found, fam: int) -> None:
        lk = self.lookups.pop(msg.lid, None)
        if lk is not None:
            ctx.cancel_timer(lk.timer)
            lk.hops, lk.timeouts = msg.hops, msg.timeouts
            self._finish(ctx, lk, msg.owner)

    def _on_failed(self, ctx: Context, src: int, msg: cm.Failed, fam: int) -> None:
        self._gave_up(ctx, msg.lid, msg.timeouts)
