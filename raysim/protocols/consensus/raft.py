"""Raft: leader election with terms, log replication, commit on a majority, optional leases.

Implements Ongaro and Ousterhout, "In search of an understandable consensus algorithm"
(USENIX ATC 2014), Figure 2, over a replicated register; leader leases for reads follow
Ongaro's thesis ("Consensus: bridging theory and practice", Stanford 2014, §6.4.1). Nodes
``0 .. servers-1`` are servers; the last ``clients`` node ids are clients.

Theory of operation
-------------------
*Terms and elections.* Each server keeps ``term`` and ``voted_for`` in stable storage
(``ctx.storage``), with its log. A follower that hears nothing from a leader for an election
timeout drawn uniformly from ``[election_min, election_max]`` becomes a candidate: it
increments its term, votes for itself and sends ``RequestVote`` to every server. A server
grants at most one vote per term, and only to a candidate whose log is at least as
up-to-date as its own (last term, then last index: §5.4.1). A candidate with votes from a
majority becomes leader; one whose timeout expires first (a split vote) starts another
election in the next term. Any message carrying a higher term turns its receiver into a
follower of that term — a deposed leader learns so at its first contact.

*Replication.* The leader sends ``AppendEntries`` every ``heartbeat`` ticks and at once when a
client's command arrives: the entries from the follower's ``next_index`` (at most
``max_batch``) with the index and term of the entry before them. A follower accepts only if
its log holds that entry (the consistency check), deletes any conflicting suffix, and appends.
The leader commits the highest index stored on a majority *whose entry is of its own term*
(§5.4.2; a new leader appends a no-op so that this happens promptly), and followers learn the
commit index from the next AppendEntries. Every server applies committed entries in order
to the register; a command id applied before is not applied again (client retries).

*Clients.* A client has one operation outstanding at a time (a write of a fresh value, or a
read, ``read_fraction`` of the time). It sends it to the server it believes is leader; a
non-leader answers with a redirect to the leader it knows, which the client follows at once;
after ``client_timeout`` without an answer the client tries a random server, its timeout
doubling on each retry up to ``client_timeout_max``. Reads go through the log (linearizable)
unless leases are on.

*Leases* (``lease = true``). A server that heard from a current leader less than
``election_min`` ago (its own clock) neither grants a vote nor adopts a higher term from a
RequestVote (thesis §4.2.3); a recovering server starts as if it had just heard from one
(at time 0 no lease can exist, so servers starting then vote at once).
When a majority has acknowledged the heartbeat round the leader sent at its local time s, it
holds a lease until local time ``s + election_min·(1-ρ)/(1+ρ)``, ρ = ``drift_bound``: no
majority can vote for anyone else before then, whatever the clocks do within the bound. While
it holds the lease, and has committed an entry of its own term, the leader answers reads
from its register without a log round-trip. Each node's clock runs at a rate drawn once from
``[1 - clock_drift, 1 + clock_drift]``: with ``clock_drift > drift_bound`` leases can
overlap, and the ``lease_safety`` check shows it.

*Disk writes.* Stable storage is instantaneous unless ``vote_write`` > 0: then a granted
vote is answered that many ticks (of the voter's clock) later, the time LogCabin takes to
write ``voted_for`` to disk before replying (the Raft paper's Figure 16 cluster had a
broadcast time of ~15 ms, "network round trip plus disk write"). The voter resets its
election timer when it grants, not when the write completes.

*Phases* (table :data:`TRANSITIONS`): follower → candidate (election timeout) → leader
(majority of votes) → follower (a higher term); a candidate that sees a leader of its term
becomes its follower. Any other transition raises.

Observations (the vocabulary of :mod:`raysim.protocols.consensus.checks`): ``candidate``
(value = term), ``leader``, ``step_down``, ``lease``, ``entry``, ``truncate``, ``commit`` at
servers; ``write``, ``read``, ``ok`` at clients.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field, model_validator

from raysim.api.protocol import Context, Params, Protocol, register
from raysim.protocols.consensus import checks as ck
from raysim.protocols.consensus import measures
from raysim.protocols.consensus.messages import (
    NOOP,
    READ,
    WRITE,
    AppendEntries,
    AppendReply,
    Entry,
    Reply,
    Request,
    RequestVote,
    VoteReply,
)
from raysim.values.rng import mix64


class RaftParams(Params):
    """Parameters of Raft (times in ticks of the node's own clock)."""

    clients: int = Field(0, ge=0, description="the last `clients` nodes are clients")
    election_min: int = Field(150, ge=1, description="election timeout, lower bound")
    election_max: int = Field(300, ge=1, description="election timeout, upper bound")
    heartbeat: int = Field(50, ge=1, description="AppendEntries period of a leader")
    max_batch: int = Field(64, ge=1, description="entries per AppendEntries")
    first_leader: int = Field(
        -1, ge=-1, description="this server's first timeout is 1 tick (-1: none)"
    )
    first_timeout: int = Field(
        1, ge=1, description="first_leader's first timeout is uniform in [1, first_timeout]"
    )
    client_start: int = Field(500, ge=0, description="clients start after this time")
    client_interval: int = Field(100, ge=1, description="mean think time between operations")
    read_fraction: float = Field(0.5, ge=0.0, le=1.0)
    client_timeout: int = Field(300, ge=1, description="first retry timeout")
    client_timeout_max: int = Field(2400, ge=1, description="retry timeout cap")
    lease: bool = Field(False, description="leader leases for reads")
    drift_bound: float = Field(0.0, ge=0.0, lt=1.0, description="ρ the leases assume")
    clock_drift: float = Field(0.0, ge=0.0, lt=1.0, description="actual clock rate spread")
    vote_write: int = Field(
        0, ge=0, description="ticks a voter takes to write its vote to disk before it answers"
    )

    @model_validator(mode="after")
    def _ordered(self) -> RaftParams:
        if self.election_max < self.election_min:
            raise ValueError(
                f"election_max ({self.election_max}) must be >= election_min ({self.election_min})"
            )
        if self.client_timeout_max < self.client_timeout:
            raise ValueError("client_timeout_max must be >= client_timeout")
        return self


FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"
TRANSITIONS: dict[tuple[str, str], str] = {
    (FOLLOWER, "timeout"): CANDIDATE,
    (CANDIDATE, "timeout"): CANDIDATE,  # split vote: next term
    (CANDIDATE, "win"): LEADER,
    (CANDIDATE, "leader_seen"): FOLLOWER,
    (FOLLOWER, "leader_seen"): FOLLOWER,
    (FOLLOWER, "higher_term"): FOLLOWER,
    (CANDIDATE, "higher_term"): FOLLOWER,
    (LEADER, "higher_term"): FOLLOWER,
}


class IllegalTransition(RuntimeError):
    """A phase change that :data:`TRANSITIONS` does not allow."""


ELECTION, HEARTBEAT, OP, RETRY, VOTE = "election", "heartbeat", "op", "retry", "vote"


def clock_rate(node: int, drift: float) -> float:
    """The rate of ``node``'s clock: spread evenly over ``[1 - drift, 1 + drift]`` by id.

    NOTE: a fixed function of the id, not a draw from ``ctx.rng``, so that turning drift on
    changes no other random decision of the run.
    """
    u = mix64(node + 0x5EED) / 2.0**64
    return 1.0 + drift * (2.0 * u - 1.0)


def majority(n: int) -> int:
    """The smallest majority of ``n`` servers."""
    return n // 2 + 1


@register("consensus.raft")
class Raft(Protocol):
    """Raft (Ongaro & Ousterhout 2014): elections with terms, log replication, leases."""

    Params: ClassVar[type[RaftParams]] = RaftParams
    milestones: ClassVar[tuple[str, ...]] = ("leader",)
    log_needs: ClassVar[str] = "observations"  # the checks read obs and lifecycle rows
    checks: ClassVar[tuple[str, ...]] = (
        "election_safety",
        "lease_safety",
        "log_matching",
        "leader_completeness",
        "state_machine_safety",
        "linearizability",
    )
    report: ClassVar[str | None] = "raysim.analysis.byzantine:raft"  # + lying voters
    adversaries: ClassVar[dict[str, str]] = {
        "vote_all": "raysim.protocols.consensus.adversaries:LyingVoter",
    }

    def __init__(self, params: RaftParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.rate = 1.0
        self.servers = 0

    # --- configuration ---------------------------------------------------------------------

    @classmethod
    def check(cls, params: RaftParams, n_nodes: int) -> None:
        """At least one server; the first leader, if named, is a server."""
        servers = n_nodes - params.clients
        if servers < 1:
            raise ValueError(
                f"clients ({params.clients}) must leave at least one server of "
                f"network.nodes ({n_nodes})"
            )
        if params.first_leader >= servers:
            raise ValueError(f"first_leader must be a server id below {servers}")

    @classmethod
    def metrics(cls, params: RaftParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per node; whether a leader was ever elected."""
        return {
            "messages_per_node": stats["sent"] / stats["nodes"],
            "elected": float(stats.get("leader_nodes", 0) > 0),
        }

    @classmethod
    def log_metrics(cls, params: RaftParams, events: ck.Columns, n_nodes: int
                    ) -> dict[str, float]:
        """Elections from the log: time, terms and split votes after the first crash of a
        sitting leader, split votes and terms per election overall, client latency
        (:func:`raysim.protocols.consensus.measures.raft_metrics`)."""
        return measures.raft_metrics(events)

    @classmethod
    def safety(cls, params: RaftParams, events: ck.Columns) -> list[ck.Violation]:
        """Raft's safety properties (Fig. 3) and, with leases, one lease holder at a time."""
        return ck.run_checks(events, cls.checks)

    # --- the node's clock ---------------------------------------------------------------------

    def _local(self, ctx: Context) -> float:
        return ctx.now * self.rate

    def _after(self, ctx: Context, local: float, tag: Any) -> int:
        """A timer ``local`` ticks of this node's clock from now."""
        return ctx.set_timer(max(0, math.ceil(local / self.rate)), tag)

    # --- lifecycle -------------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        p = self.p
        self.servers = ctx.n_nodes - p.clients
        self.rate = clock_rate(self.node, p.clock_drift)
        if self.node >= self.servers:
            self._client_start(ctx)
            return
        st = ctx.storage
        st.setdefault("term", 0)
        st.setdefault("voted_for", -1)
        st.setdefault("log", [])
        self.role = FOLLOWER
        self.leader_hint = -1
        self.commit = 0
        self.applied = 0
        self.register = 0.0
        self.results: dict[int, float] = {}
        self.pending: dict[int, int] = {}  # command id -> client waiting at this leader
        self.votes: set[int] = set()
        self.next_index: dict[int, int] = {}
        self.match: dict[int, int] = {}
        self.round = 0
        self.round_sent: dict[int, float] = {}
        self.acked: dict[int, int] = {}
        self.lease_until = -math.inf
        self.term_start = 0
        # A recovering server acts as if it had just heard from a leader (the lease rule);
        # at time 0 nobody can hold a lease yet.
        self.heard = self._local(ctx) if ctx.now > 0 else -math.inf
        self.election_timer = -1
        if p.first_leader == self.node and ctx.now == 0:
            # NOTE: a spread first timeout puts a crash at a fixed time at a uniformly random
            # point of the leader's heartbeat interval (the Raft paper's Figure 16 setup).
            first = 1 + ctx.rng.randrange(p.first_timeout) if p.first_timeout > 1 else 1
            self.election_timer = ctx.set_timer(first, ELECTION)
        else:
            self._reset_election(ctx)

    # --- phases ----------------------------------------------------------------------------

    def _go(self, event: str) -> None:
        try:
            self.role = TRANSITIONS[(self.role, event)]
        except KeyError:
            raise IllegalTransition(
                f"raft node {self.node}: no transition from {self.role} on {event!r}"
            ) from None

    def _adopt(self, ctx: Context, term: int) -> None:
        """A higher term: become its follower (a leader steps down)."""
        was_leader = self.role == LEADER
        self._go("higher_term")
        st = ctx.storage
        if was_leader:
            ctx.emit("step_down", st["term"])
            self.pending.clear()
        st["term"], st["voted_for"] = term, -1

    def _reset_election(self, ctx: Context) -> None:
        if self.election_timer >= 0:
            ctx.cancel_timer(self.election_timer)
        p = self.p
        span = p.election_max - p.election_min
        timeout = p.election_min + (ctx.rng.randrange(span + 1) if span else 0)
        self.election_timer = self._after(ctx, timeout, ELECTION)

    # --- timers ----------------------------------------------------------------------------

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if self.node >= self.servers:
            self._client_timer(ctx, tag)
        elif tag == ELECTION and self.role != LEADER:
            self._start_election(ctx)
        elif tag == HEARTBEAT and self.role == LEADER:
            self._broadcast(ctx)
            self._after(ctx, self.p.heartbeat, HEARTBEAT)
        elif type(tag) is tuple and tag[0] == VOTE:
            ctx.send(tag[1], VoteReply(tag[2], True))  # the vote is on disk now

    def _start_election(self, ctx: Context) -> None:
        self._go("timeout")
        st = ctx.storage
        st["term"] += 1
        st["voted_for"] = self.node
        self.votes = {self.node}
        self.leader_hint = -1
        ctx.emit("candidate", st["term"])
        self._reset_election(ctx)
        log = st["log"]
        last_term = log[-1][0] if log else 0
        msg = RequestVote(st["term"], len(log), last_term)
        for s in range(self.servers):
            if s != self.node:
                ctx.send(s, msg)
        self._maybe_win(ctx)

    def _maybe_win(self, ctx: Context) -> None:
        if self.role != CANDIDATE or len(self.votes) < majority(self.servers):
            return
        self._go("win")
        st = ctx.storage
        ctx.emit("leader", st["term"])
        ctx.cancel_timer(self.election_timer)
        self.election_timer = -1
        self.leader_hint = self.node
        log = st["log"]
        self.next_index = {s: len(log) + 1 for s in range(self.servers) if s != self.node}
        self.match = dict.fromkeys(self.next_index, 0)
        self.acked = dict.fromkeys(self.next_index, -1)
        self.round_sent = {}
        self.lease_until = -math.inf
        self._append(ctx, (st["term"], -1 - st["term"], NOOP, 0.0))
        self.term_start = len(log)
        self._broadcast(ctx)
        self._after(ctx, self.p.heartbeat, HEARTBEAT)

    def _append(self, ctx: Context, entry: Entry) -> None:
        log = ctx.storage["log"]
        log.append(entry)
        ctx.emit("entry", len(log), peer=entry[0], ref=entry[1])

    def _broadcast(self, ctx: Context) -> None:
        self.round += 1
        self.round_sent[self.round] = self._local(ctx)
        for s in self.next_index:
            self._send_append(ctx, s)
        if self.servers == 1:
            self._advance_commit(ctx)

    def _send_append(self, ctx: Context, s: int) -> None:
        st = ctx.storage
        log = st["log"]
        nxt = self.next_index[s]
        prev = nxt - 1
        entries = tuple(log[prev : prev + self.p.max_batch])
        prev_term = log[prev - 1][0] if prev > 0 else 0
        ctx.send(s, AppendEntries(st["term"], prev, prev_term, entries, self.commit, self.round))

    # --- messages --------------------------------------------------------------------------

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        if self.node >= self.servers:
            if type(msg) is Reply:
                self._client_reply(ctx, msg)
            return
        kind = type(msg)
        if kind is Request:
            self._request(ctx, src, msg)
            return
        st = ctx.storage
        if kind is RequestVote:
            self._request_vote(ctx, src, msg)
            return
        if msg.term > st["term"]:
            self._adopt(ctx, msg.term)
        if kind is AppendEntries:
            self._append_entries(ctx, src, msg)
        elif kind is AppendReply:
            self._append_reply(ctx, src, msg)
        elif (
            kind is VoteReply and self.role == CANDIDATE and msg.term == st["term"] and msg.granted
        ):
            self.votes.add(src)
            self._maybe_win(ctx)

    def _request_vote(self, ctx: Context, src: int, msg: RequestVote) -> None:
        st = ctx.storage
        if self.p.lease and self._local(ctx) - self.heard < self.p.election_min:
            return  # a current leader was heard recently: ignore (thesis §4.2.3)
        if msg.term > st["term"]:
            self._adopt(ctx, msg.term)
        log = st["log"]
        mine = (log[-1][0] if log else 0, len(log))
        granted = (
            msg.term == st["term"]
            and st["voted_for"] in (-1, src)
            and (msg.last_term, msg.last_index) >= mine
        )
        if granted:
            st["voted_for"] = src
            self._reset_election(ctx)
            if self.p.vote_write:
                self._after(ctx, self.p.vote_write, (VOTE, src, st["term"]))
                return
        ctx.send(src, VoteReply(st["term"], granted))

    def _append_entries(self, ctx: Context, src: int, msg: AppendEntries) -> None:
        st = ctx.storage
        if msg.term < st["term"]:
            ctx.send(src, AppendReply(st["term"], False, 0, msg.round))
            return
        if self.role == LEADER:
            # NOTE: two leaders in one term: impossible in Raft, but a broken variant (or a
            # user's) must not crash here; the safety checks report it from the log.
            ctx.send(src, AppendReply(st["term"], False, 0, msg.round))
            return
        self._go("leader_seen")
        self.leader_hint = src
        self.heard = self._local(ctx)
        self._reset_election(ctx)
        log = st["log"]
        prev = msg.prev_index
        if prev > len(log) or (prev > 0 and log[prev - 1][0] != msg.prev_term):
            hint = min(len(log), prev - 1)
            ctx.send(src, AppendReply(st["term"], False, hint, msg.round))
            return
        for k, entry in enumerate(msg.entries):
            idx = prev + 1 + k
            if idx <= len(log):
                if log[idx - 1][0] == entry[0]:
                    continue
                del log[idx - 1 :]
                ctx.emit("truncate", idx)
            self._append(ctx, entry)
        last = prev + len(msg.entries)
        if msg.commit > self.commit:
            self._commit_to(ctx, min(msg.commit, last))
        ctx.send(src, AppendReply(st["term"], True, last, msg.round))

    def _append_reply(self, ctx: Context, src: int, msg: AppendReply) -> None:
        st = ctx.storage
        if self.role != LEADER or msg.term != st["term"]:
            return
        if not msg.success:
            self.next_index[src] = max(1, min(self.next_index[src] - 1, msg.match + 1))
            self._send_append(ctx, src)
            return
        if msg.match > self.match[src]:
            self.match[src] = msg.match
        self.next_index[src] = self.match[src] + 1
        if msg.round > self.acked[src]:
            self.acked[src] = msg.round
            self._renew_lease(ctx)
        self._advance_commit(ctx)
        if self.next_index[src] <= len(st["log"]):
            self._send_append(ctx, src)

    def _advance_commit(self, ctx: Context) -> None:
        st = ctx.storage
        log = st["log"]
        need = majority(self.servers)
        for n in range(len(log), self.commit, -1):
            if log[n - 1][0] != st["term"]:
                break  # only entries of the leader's own term commit by counting (§5.4.2)
            if 1 + sum(m >= n for m in self.match.values()) >= need:
                self._commit_to(ctx, n)
                break

    def _renew_lease(self, ctx: Context) -> None:
        if not self.p.lease:
            return
        need = majority(self.servers) - 1  # acknowledgements besides the leader's own
        rounds = sorted(self.acked.values(), reverse=True)
        r = rounds[need - 1] if need > 0 else self.round
        if r < 1:
            return
        p = self.p
        rho = p.drift_bound
        until = self.round_sent[r] + p.election_min * (1.0 - rho) / (1.0 + rho)
        if until > self.lease_until:
            self.lease_until = until
            for old in [k for k in self.round_sent if k < r]:
                del self.round_sent[old]
            # the true time at which this node's clock reaches `until`
            ctx.emit("lease", math.floor(until / self.rate), ref=ctx.storage["term"])

    def _commit_to(self, ctx: Context, index: int) -> None:
        log = ctx.storage["log"]
        for i in range(self.commit + 1, index + 1):
            term, cmd, kind, value = log[i - 1]
            ctx.emit("commit", i, peer=term, ref=cmd)
            if kind == WRITE and cmd not in self.results:
                self.register = value
                self.results[cmd] = value
            elif kind == READ and cmd not in self.results:
                self.results[cmd] = self.register
            client = self.pending.pop(cmd, -1)
            if client >= 0:
                ctx.send(client, Reply(cmd, True, self.results[cmd], self.node))
        self.commit = max(self.commit, index)

    def _request(self, ctx: Context, src: int, msg: Request) -> None:
        st = ctx.storage
        if self.role != LEADER:
            ctx.send(src, Reply(msg.op, False, 0.0, self.leader_hint))
            return
        if msg.op in self.results:
            ctx.send(src, Reply(msg.op, True, self.results[msg.op], self.node))
            return
        if (
            msg.kind == READ
            and self.p.lease
            and self._local(ctx) < self.lease_until
            and self.commit >= self.term_start
        ):
            ctx.send(src, Reply(msg.op, True, self.register, self.node))
            return
        self.pending[msg.op] = src
        log = st["log"]
        if not any(e[1] == msg.op for e in log[self.commit :]):
            self._append(ctx, (st["term"], msg.op, msg.kind, msg.value))
            for s in self.next_index:
                if self.next_index[s] == len(log):  # up to date: send the new entry now
                    self._send_append(ctx, s)
        if self.servers == 1:
            self._advance_commit(ctx)

    # --- clients ---------------------------------------------------------------------------

    def _client_start(self, ctx: Context) -> None:
        self.st = ctx.storage  # the operation counter survives a crash: ids stay unique
        self.st.setdefault("seq", 0)
        self.op = -1
        self.op_kind = READ
        self.op_value = 0.0
        self.target = ctx.rng.randrange(self.servers)
        self.tries = 0
        self.timer = -1
        ctx.set_timer(self.p.client_start + ctx.rng.randrange(self.p.client_interval + 1), OP)

    def _client_timer(self, ctx: Context, tag: Any) -> None:
        if tag == OP:
            self.st["seq"] += 1
            self.op = (self.node << 32) | self.st["seq"]
            self.tries = 0
            if ctx.rng.random() < self.p.read_fraction:
                self.op_kind, self.op_value = READ, -1.0
                ctx.emit("read", -1.0, ref=self.op)
            else:
                self.op_kind, self.op_value = WRITE, float(self.op)
                ctx.emit("write", float(self.op), ref=self.op)
            self._client_send(ctx)
        elif tag == RETRY and self.op >= 0:
            self.tries += 1
            self.target = ctx.rng.randrange(self.servers)
            self._client_send(ctx)

    def _client_send(self, ctx: Context) -> None:
        ctx.send(self.target, Request(self.op, self.op_kind, self.op_value))
        if self.timer >= 0:
            ctx.cancel_timer(self.timer)
        wait = min(self.p.client_timeout << min(self.tries, 30), self.p.client_timeout_max)
        self.timer = ctx.set_timer(wait, RETRY)

    def _client_reply(self, ctx: Context, msg: Reply) -> None:
        if msg.op != self.op:
            return
        if msg.ok:
            ctx.emit("ok", msg.value, ref=self.op)
            ctx.cancel_timer(self.timer)
            self.timer = -1
            self.op = -1
            self.target = msg.leader
            think = 1 + ctx.rng.randrange(2 * self.p.client_interval)
            ctx.set_timer(think, OP)
        elif msg.leader >= 0 and msg.leader != self.target:
            self.target = msg.leader
            self._client_send(ctx)
