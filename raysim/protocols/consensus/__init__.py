"""Consensus: Raft, a naive leader election (the counter-example), a quorum register, checkers.

Importing the package registers ``consensus.raft`` and ``consensus.naive_leader``; the
checkers are :mod:`raysim.protocols.consensus.checks`.
"""

from raysim.protocols.consensus import checks, naive, raft

__all__ = ["checks", "naive", "raft"]
