"""Consensus: Raft, a naive leader election (the counter-example), a quorum register, checkers.

Importing the package registers ``consensus.raft``, ``consensus.naive_leader`` and
``consensus.quorum_register``; the checkers are :mod:`raysim.protocols.consensus.checks`.
"""

from raysim.protocols.consensus import checks, measures, naive, quorum, raft

__all__ = ["checks", "measures", "naive", "quorum", "raft"]
