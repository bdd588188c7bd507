"""raysim: deterministic, fault-injecting simulation of distributed-systems algorithms on Ray.

The public surface: the protocol API (:class:`Protocol`, :class:`BatchProtocol`,
:func:`register`), experiment loading and running (:func:`load`, :func:`run`), the event log
schema, and the causality and replicated-data toolkit (clocks, version vectors, CRDTs, the
consistent-hash ring). The engine's modules are implementation detail.

NOTE: every name is imported on first use (PEP 562), so ``import raysim`` or importing a
value type or the protocol API loads neither Ray, pyarrow, pandas nor the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raysim._version import __version__

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("DenseVectorClock", "LamportClock", "Order", "SparseVectorClock", "VectorClock"),
        "raysim.values.clocks",
    ),
    **dict.fromkeys(
        (
            "GCounter",
            "GSet",
            "LWWElementSet",
            "LWWRegister",
            "MVRegister",
            "ORSet",
            "PNCounter",
            "StateCRDT",
            "TwoPSet",
        ),
        "raysim.values.crdt",
    ),
    **dict.fromkeys(("HistoryClassification", "classify_history"), "raysim.values.history"),
    **dict.fromkeys(
        (
            "EmptyRingError",
            "HashRing",
            "KeyMoves",
            "LoadStats",
            "key_moves",
            "keys_per_node",
            "load_stats",
        ),
        "raysim.values.ring",
    ),
    **dict.fromkeys(("ReplicaId", "VersionVector"), "raysim.values.versions"),
    **dict.fromkeys(
        (
            "BatchContext",
            "BatchEvents",
            "BatchProtocol",
            "Context",
            "Params",
            "Protocol",
            "Violation",
            "register",
        ),
        "raysim.api.protocol",
    ),
    **dict.fromkeys(("ConfigError", "ProtocolError"), "raysim.errors"),
    **dict.fromkeys(("ExperimentConfig", "load"), "raysim.experiments.config"),
    **dict.fromkeys(("RunResult", "run"), "raysim.experiments.runner"),
    **dict.fromkeys(("EVENT_SCHEMA", "KINDS"), "raysim.log.schema"),
}

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
    "Violation",
    "__version__",
    "classify_history",
    "key_moves",
    "keys_per_node",
    "load",
    "load_stats",
    "register",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raysim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from raysim.api.protocol import (
        BatchContext,
        BatchEvents,
        BatchProtocol,
        Context,
        Params,
        Protocol,
        Violation,
        register,
    )
    from raysim.errors import ConfigError, ProtocolError
    from raysim.experiments.config import ExperimentConfig, load
    from raysim.experiments.runner import RunResult, run
    from raysim.log.schema import EVENT_SCHEMA, KINDS
    from raysim.values.clocks import (
        DenseVectorClock,
        LamportClock,
        Order,
        SparseVectorClock,
        VectorClock,
    )
    from raysim.values.crdt import (
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
    from raysim.values.history import HistoryClassification, classify_history
    from raysim.values.ring import (
        EmptyRingError,
        HashRing,
        KeyMoves,
        LoadStats,
        key_moves,
        keys_per_node,
        load_stats,
    )
    from raysim.values.versions import ReplicaId, VersionVector
