"""Byzantine variants of the quorum register and of Raft (``[faults.byzantine] behaviour``).

``vote_all`` (Raft, :class:`LyingVoter`): a server that grants its vote to every candidate
that asks, in the candidate's own term (it forges the term of its reply), whatever it
voted before and however stale the candidate's log. Raft's election safety rests on two
majorities of one term sharing a server that votes once; with n = 5, a candidate needs
itself, the liar and one honest server, so two candidates standing in one term can both
win. Two leaders of one term then write different entries under the same (index, term),
which followers take for the same entry. Under a partition that leaves the liar in touch
with both sides (``experiments/byzantine_raft.toml``), each side elects a leader with its
own votes and the liar's, and both commit through the liar's acknowledgements:
``election_safety``, ``log_matching``, ``leader_completeness``, ``state_machine_safety``
and ``linearizability`` report it. Raft tolerates crashes of a minority, not one liar.


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
from raysim.protocols.consensus.messages import RequestVote, VoteReply
from raysim.protocols.consensus.quorum import (
    Get,
    GetReply,
    Put,
    PutAck,
    QuorumRegister,
    Siblings,
)
from raysim.protocols.consensus.raft import Raft
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


class LyingVoter(Raft):
    """A Raft server that votes for every candidate, in the candidate's term (``vote_all``).

    Otherwise honest: it follows leaders, replicates and stands in elections like any
    server (a client node with this class is honest).
    """

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)
        if self.node < self.servers:
            ctx.emit("byzantine")  # so the analysis knows who is honest

    def _request_vote(self, ctx: Context, src: int, msg: RequestVote) -> None:
        if msg.term > ctx.storage["term"]:
            self._adopt(ctx, msg.term)
        self._reset_election(ctx)
        ctx.send(src, VoteReply(msg.term, True))
