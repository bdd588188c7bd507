"""Messages of Raft and of its clients: small NamedTuples, one class per type (the log counts them).

=====================  ========================================================================
message                fields
=====================  ========================================================================
``RequestVote``        candidate's term and last log index and term (Raft Fig. 2)
``VoteReply``          the voter's term, whether it granted its vote
``AppendEntries``      leader's term, index and term of the entry before ``entries``, the
                       entries (tuples ``(term, command, kind, value)``), leader's commit
                       index, and the heartbeat round (for leases)
``AppendReply``        the follower's term, success, the last index it now matches (or, on
                       failure, the index the leader should retry after), the round echoed
``Request``            a client's operation: id, kind (0 read, 1 write), value written
``Reply``              the outcome: ok (else redirect), the value written or read, and the
                       server the replier believes is leader (-1 if it does not know)
=====================  ========================================================================
"""

from __future__ import annotations

from typing import NamedTuple

READ, WRITE, NOOP = 0, 1, 2

Entry = tuple[int, int, int, float]  # (term, command id, kind, value)


class RequestVote(NamedTuple):
    """Candidate asks for a vote in ``term``."""

    term: int
    last_index: int
    last_term: int


class VoteReply(NamedTuple):
    """Answer to a RequestVote."""

    term: int
    granted: bool


class AppendEntries(NamedTuple):
    """Leader replicates ``entries`` after ``prev_index`` (a heartbeat when empty)."""

    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    round: int


class AppendReply(NamedTuple):
    """Follower's answer to AppendEntries."""

    term: int
    success: bool
    match: int
    round: int


class Request(NamedTuple):
    """A client operation on the replicated register."""

    op: int
    kind: int
    value: float


class Reply(NamedTuple):
    """A server's answer to a client: done (``ok``), or try ``leader``."""

    op: int
    ok: bool
    value: float
    leader: int
