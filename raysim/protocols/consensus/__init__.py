"""Consensus: Raft, a naive leader election (the counter-example), a quorum register, checkers."""

from raysim.protocols.consensus import checks

__all__ = ["checks"]
