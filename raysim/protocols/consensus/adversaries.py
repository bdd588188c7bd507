"""A Byzantine replica of the quorum register (:mod:`raysim.protocols.consensus.quorum`).

``forge``: the replica acknowledges writes without storing them and answers every read with
a value nobody wrote under a version higher than any real one. Quorum intersection (R + W
> N) guarantees that a read quorum contains a replica that saw the latest write, not that
the replica is honest: the client takes the highest version it hears, so one liar in its
read quorum decides the read. The ``linearizability`` and ``stale_reads`` checks see the
result (a read of a value that was never written). With ``versions = "vector"`` the liar
answers with a sibling under a vector concurrent with every real one and summarising more
updates than any: the read reports siblings, and the client's choice among them is the lie.
"""

from __future__ import annotations

from typing import Any

from raysim.api.protocol import Context
from raysim.protocols.consensus.quorum import (
    Get,
    GetReply,
    Put,
    PutAck,
    QuorumRegister,
    Siblings,
)
from raysim.values.versions import VersionVector

FORGED_VALUE = -7.0  # never written: clients write their (non-negative) operation ids
FORGED_VERSION = (2**62, -1)
FORGED_VECTOR = VersionVector({2**31: 2**40})  # no real replica or client has this id


class ForgingReplica(QuorumRegister):
    """A replica that forges every read answer (a client node with this class is honest)."""

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if self.node >= self.replicas:
            super().on_message(ctx, src, msg)
            return
        if type(msg) is Put and msg.op >= 0:
            ctx.send(src, PutAck(msg.op))
        elif type(msg) is Get and self.p.versions == "vector":
            ctx.send(src, Siblings(msg.op, ((FORGED_VECTOR, FORGED_VALUE),)))
        elif type(msg) is Get:
            ctx.send(src, GetReply(msg.op, FORGED_VERSION, FORGED_VALUE))
