"""The network and fault model: fault specs as data, the router, topologies, the lifecycle schedule.

Every decision here is a pure function of the run's seed and an identity (a message, a node,
a fault entry), so it is the same wherever it is computed.
"""
