"""raysim: deterministic, fault-injecting simulation of distributed-systems algorithms on Ray.

The public surface: the protocol API (:class:`Protocol`, :class:`BatchProtocol`,
:func:`register`), experiment loading and running (:func:`load`, :func:`run`), the event log
schema, and the causality and replicated-data toolkit (clocks, version vectors, CRDTs, the
consistent-hash ring). The engine's modules are implementation detail.
"""

from raysim._version import __version__
from raysim.clocks import DenseVectorClock, LamportClock, Order, SparseVectorClock, VectorClock
from raysim.config import ExperimentConfig, load
from raysim.crdt import (
    GCounter,
    GSet,
    LWWElementSet,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    StateCRDT,
    TwoPSet,
)
from raysim.errors import ConfigError, ProtocolError
from raysim.history import HistoryClassification, classify_history
from raysim.protocol import (
    BatchContext,
    BatchEvents,
    BatchProtocol,
    Context,
    Params,
    Protocol,
    register,
)
from raysim.ring import (
    EmptyRingError,
    HashRing,
    KeyMoves,
    LoadStats,
    key_moves,
    keys_per_node,
    load_stats,
)
from raysim.runner import RunResult, run
from raysim.schema import EVENT_SCHEMA, KINDS
from raysim.versions import ReplicaId, VersionVector

__all__ = [
    "EVENT_SCHEMA",
    "KINDS",
    "BatchContext",
    "BatchEvents",
    "BatchProtocol",
    "ConfigError",
    "Context",
    "DenseVectorClock",
    "EmptyRingError",
    "ExperimentConfig",
    "GCounter",
    "GSet",
    "HashRing",
    "HistoryClassification",
    "KeyMoves",
    "LWWElementSet",
    "LWWRegister",
    "LamportClock",
    "LoadStats",
    "MVRegister",
    "ORSet",
    "Order",
    "PNCounter",
    "Params",
    "Protocol",
    "ProtocolError",
    "ReplicaId",
    "RunResult",
    "SparseVectorClock",
    "StateCRDT",
    "TwoPSet",
    "VectorClock",
    "VersionVector",
    "__version__",
    "classify_history",
    "key_moves",
    "keys_per_node",
    "load",
    "load_stats",
    "register",
    "run",
]
