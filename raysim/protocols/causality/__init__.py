"""The causality family: Lamport and vector clocks kept by the protocol, causal broadcast."""

from raysim.protocols.causality import broadcast, lamport, traffic, vector

__all__ = ["broadcast", "lamport", "traffic", "vector"]
