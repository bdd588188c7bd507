"""Byzantine variants of Chord (:mod:`raysim.protocols.chord.protocol`), after OverSim's attacks.

OverSim (Baumgart, Heep and Krause 2007) models malicious Chord nodes that answer lookups
falsely or not at all. Two variants here, chosen with ``[faults.byzantine] behaviour``:

* ``wrong``: a malicious node claims to own every key it is asked about. Recursive: it
  acknowledges the hop and answers the origin with itself as the owner; iterative: it
  answers every query with ``Done`` and itself as the successor, so the asker probes it and
  ends there. The lookup "succeeds" at the wrong node.
* ``drop``: a malicious node silently drops every lookup and query it should route (no
  acknowledgement, no answer): the previous hop times out and routes around it, or the
  lookup gives up (a failed lookup).

Malicious nodes stabilise, answer pings and run their own lookups honestly, so they stay in
everybody's routing tables: the attack is on routing, not on membership.
"""

from __future__ import annotations

from raysim.api.protocol import Context
from raysim.protocols.chord import messages as cm
from raysim.protocols.chord.protocol import Chord


class WrongOwner(Chord):
    """Answers every lookup it routes for others with itself as the key's owner."""

    def _on_lookup(self, ctx: Context, src: int, msg: cm.Lookup, fam: int) -> None:
        if msg.origin == self.node:
            super()._on_lookup(ctx, src, msg, fam)
            return
        ctx.send(src, cm.FAMILIES[fam].Ack(msg.req))
        self._answer(ctx, msg, fam, self.node)

    def _on_query(self, ctx: Context, src: int, msg: cm.Query, fam: int) -> None:
        ctx.send(src, cm.FAMILIES[fam].Done(msg.req, (self.node,)))


class DropLookups(Chord):
    """Drops every lookup step and query it gets from other nodes."""

    def _on_lookup(self, ctx: Context, src: int, msg: cm.Lookup, fam: int) -> None:
        if msg.origin == self.node:
            super()._on_lookup(ctx, src, msg, fam)

    def _on_query(self, ctx: Context, src: int, msg: cm.Query, fam: int) -> None:
        return
