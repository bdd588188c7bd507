"""The protocol API: sans-IO node state machines, the context they act through, a registry.

A protocol is a class; the engine makes one instance per simulated node and calls its
handlers. Handlers never do I/O, never read the wall clock and never use global random
state: everything they may do goes through the :class:`Context` passed to each call. That
makes a protocol testable by calling its handlers with a fake context and looking at what
it sent (see ``tests/test_protocols_unit.py``), and it is what lets the engine replay a run
bit for bit on any backend.

Protocol modules import this module (and pydantic for their parameters) and nothing of the
engine, Ray or pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from typing import Protocol as TypingProtocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from raysim.values.rng import NodeRng


class Context(TypingProtocol):
    """What a handler may do. The engine passes one; tests may pass a fake.

    Attributes ``node`` (this node's id), ``now`` (virtual time in ticks), ``n_nodes``
    (size of the system), ``seed`` and ``cause`` are read-only for the protocol. ``seed`` is
    the run's seed, the same at every node: for what all nodes of a run must agree on, such
    as Chord's identifiers. ``cause`` is the id
    of what the running handler handles: the message's ``msg_id`` in ``on_message`` (what
    its sender's ``send`` returned), the timer's id in ``on_timer`` (what ``set_timer``
    returned), -1 in the lifecycle handlers (start, crash, recover, join, leave).
    """

    node: int
    now: int
    n_nodes: int
    seed: int
    cause: int

    def send(self, dst: int, msg: object) -> int:
        """Send ``msg`` to node ``dst`` through the (faulty) network; returns its message id.

        The id is ``node << 32 | k`` for this node's k-th send (the ``msg_id`` of its log
        rows, and the receiver's ``ctx.cause``).
        """
        ...

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        """Call ``on_timer(ctx, tag)`` after ``delay`` ticks (>= 0); returns a timer id."""
        ...

    def cancel_timer(self, timer_id: int) -> None:
        """Cancel a pending timer; cancelling a fired or unknown timer does nothing."""

    def emit(
        self, name: str, value: int | float | bool | str | Sequence[int] = 1.0, peer: int = -1,
        ref: int = -1,
    ) -> None:
        """Record an observation (a row of kind ``obs``) at this node and time.

        ``value`` is an int (int64), a float (not NaN), a bool, a str (at most 256
        characters) or a sequence of ints (a vector, e.g. a vector clock); the log keeps its
        type (columns ``value``, ``value_type``, ``value_int``, ``value_str``,
        ``value_vec``). ``peer`` and ``ref`` (optional ints) go to the row's ``peer`` and
        ``msg_id`` columns, e.g. the node a lookup ended at and the key it looked up, or
        ``ref=ctx.cause`` to point at the message being handled. A bad argument raises here,
        inside the handler (the run fails with the node, time and event).
        """

    @property
    def rng(self) -> NodeRng:
        """This node's private random stream."""
        ...

    @property
    def peers(self) -> Sequence[int]:
        """This node's view of the membership: its neighbours, never itself."""
        ...

    def random_peer(self) -> int:
        """A uniformly random peer from :attr:`peers`, never this node itself."""
        ...

    @property
    def storage(self) -> dict[str, Any]:
        """Stable storage: survives a crash-recovery, unlike every other field."""
        ...


class NoParams(BaseModel):
    """Parameters of a protocol that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Params(BaseModel):
    """Base class for protocol parameters: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Violation:
    """One breach of a safety property, found in a run's event log by ``safety``.

    ``check`` is one of the protocol's declared :attr:`Contract.checks`; ``time`` the
    virtual time (ticks) at which it shows; ``nodes`` the nodes involved; ``detail`` one
    line a reader can act on.
    """

    check: str
    time: int
    nodes: tuple[int, ...]
    detail: str


def holding(events: Mapping[str, Any], name: str, texts: Iterable[str]) -> np.ndarray:
    """Which rows of a check's ``events`` hold one of ``texts`` in the string column
    ``name`` (a bool array, row for row): ``events[name] == t`` for each text, or-ed.

    The runner's mapping answers from the column's string codes (its ``holds``), never
    building the column's objects: a comparison of an object array costs ~30 ns a row, a
    code lookup ~1 ns. Any other mapping (a test's table, say) has its values compared.
    """
    holds = getattr(events, "holds", None)
    if holds is not None:
        out: np.ndarray = holds(name, texts)
        return out
    return equal_any(np.asarray(events[name]), texts)


def equal_any(values: np.ndarray, texts: Iterable[str]) -> np.ndarray:
    """Which ``values`` equal one of ``texts`` (a bool array)."""
    out = np.zeros(len(values), dtype=bool)
    for t in texts:
        out |= values == t
    return out


class Contract:
    """What the engine, runner and report read from a protocol class, with their defaults.

    :class:`Protocol` and :class:`BatchProtocol` both derive from it; override what your
    protocol needs. Every member is optional and looked up directly (no ``getattr``).
    """

    Params: ClassVar[type[BaseModel]] = NoParams

    milestones: ClassVar[tuple[str, ...]] = ()
    """Observation names whose *first* emission per node the engine counts; the run row
    gets ``<name>_nodes`` (how many nodes emitted it) and ``<name>_time`` (when the last of
    them first did)."""

    checks: ClassVar[tuple[str, ...]] = ()
    """Names of the safety properties :meth:`safety` checks; each becomes a column
    ``metric.violations.<check>`` of ``runs.parquet`` (0 when it held)."""

    log_needs: ClassVar[str] = "all"
    """The ``log.level`` that :meth:`safety` and :meth:`log_metrics` need: ``"all"`` (they
    read message rows) or ``"observations"`` (observation and lifecycle rows are enough, so
    they also run on observation-only logs)."""

    log_columns: ClassVar[tuple[str, ...] | None] = None
    """The event-log columns :meth:`safety` and :meth:`log_metrics` read, or None for every
    column. The canonical sort keys (``time``, ``node``, ``seq``, ``kind``, ``msg_id``,
    ``peer``, ``msg_type``, ``name``, ``value``) are always there; naming the rest saves
    reading (and holding) the columns a check never looks at, e.g. typed observation
    values on a 10⁷-row log."""

    log_kinds: ClassVar[tuple[str, ...] | None] = None
    """The row kinds (``kind`` column) :meth:`safety` and :meth:`log_metrics` read, or None
    for every row; the rows they get keep their canonical order."""

    log_order: ClassVar[str] = "canonical"
    """The row order :meth:`safety` and :meth:`log_metrics` need: ``"canonical"`` (time,
    node, then ``seq``: see :mod:`raysim.experiments.checks`) or ``"any"`` (they order what
    they need themselves, e.g. by ``(node, seq)``, which is each node's program order): the
    rows then come in the log's file order, without the sort of every row and the gather of
    every column read (~0.5 s of a 5 M-row log)."""

    report: ClassVar[str | None] = None
    """``"module:function"`` of this protocol's section of ``raysim report``, or None (the
    report then shows only its generic parts for these runs). The function takes
    ``(where, runs)`` (a results location and the ok runs of protocols sharing the
    section, a pandas DataFrame) and returns a list of
    :class:`raysim.analysis.section.Part`; it is imported only when a report is built."""

    message_types: ClassVar[tuple[str, ...]] = ()
    """The names of the messages this protocol sends. A columnar protocol's type table (its
    ``mtype`` indexes it); on a per-node protocol the class names of its messages
    (``type(msg).__name__``, the log's ``type``). ``[faults.byzantine] types`` is checked
    against them when the experiment is loaded; empty (the default) means not declared, and
    then those names are not checked."""

    adversaries: ClassVar[dict[str, str]] = {}
    """Byzantine variants of this protocol: behaviour name -> ``"module:Class"`` of a
    subclass that misbehaves. ``[faults.byzantine] behaviour = "name"`` makes the Byzantine
    nodes run that class (the name is checked when the experiment is loaded). A per-node
    protocol's adversary is built for those nodes only, as ``Adversary(params, node)``. A
    columnar protocol has one object per shard, so its adversary replaces the whole shard's
    object and gets the mask of the shard's Byzantine nodes (local indices) as the attribute
    ``byzantine`` (a numpy bool array) before ``on_start``: it overrides what those rows do
    and leaves the others honest. Resolve one with :meth:`adversary`."""

    byzantine: Any = None
    """On a columnar adversary: the bool mask of this shard's Byzantine nodes (see above)."""

    @classmethod
    def adversary(cls, name: str) -> type:
        """The class of the adversary variant ``name`` (imported on first use)."""
        import importlib

        ref = cls.adversaries[name]
        module, _, qual = ref.partition(":")
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        if not (isinstance(obj, type) and issubclass(obj, cls)):
            raise TypeError(f"adversary {name!r} of {cls.__qualname__}: {ref} is not a subclass")
        return obj

    @classmethod
    def check(cls, params: Any, n_nodes: int) -> None:
        """Check the parameters against the network size when the experiment is loaded.

        Raise ``ValueError`` with a clear message (it becomes the one-line config error,
        exit code 2, before anything runs). The default accepts everything.
        """

    @classmethod
    def metrics(cls, params: Any, stats: dict[str, Any]) -> dict[str, float]:
        """Derived numbers for the run row, from the run's totals.

        ``stats`` holds ``nodes``, ``end_time``, ``sent``, ``delivered``, ``lost``, … and
        ``<milestone>_nodes`` / ``<milestone>_time``; each returned ``name`` becomes the
        column ``metric.<name>``. The default returns none.
        """
        return {}

    @classmethod
    def log_metrics(
        cls, params: Any, events: Mapping[str, Any], n_nodes: int
    ) -> dict[str, float]:
        """Derived numbers for the run row that need the event log (``metric.<name>``).

        ``events`` is the mapping :meth:`safety` receives; called after the run when the
        run's ``log.level`` covers :attr:`log_needs`. The default returns none.
        """
        return {}

    @classmethod
    def safety(cls, params: Any, events: Mapping[str, Any]) -> Iterable[Violation]:
        """Check safety properties over the run's whole event log; yield each breach.

        ``events`` maps every column of the log (``time``, ``kind``, ``node``, ``peer``,
        ``msg_id``, ``msg_type``, ``name``, ``value``, … whatever the schema has) to a
        numpy array, rows in canonical order (time, node, then the node's event sequence
        where the log has one); string columns are object arrays (None where null), and
        :func:`holding` tests one against a few texts without building its objects. The
        runner's mapping reads a column from disk when it is first looked up, so a check
        pays only for the columns it reads (:attr:`log_columns` bounds them). It is
        called once, after the run, only when :attr:`checks` is not empty and the run was
        logged with ``log.level = "all"``. Each :class:`Violation` must name one of
        :attr:`checks`. The default finds nothing.
        """
        return ()


class Protocol(Contract):
    """Base class of a node's state machine. Override the handlers you need.

    ``Params`` names the pydantic model of the protocol's parameters (validated from the
    experiment file's ``[protocol]`` table); an instance is built per node as
    ``cls(params, node)``. The rest of the contract (milestones, checks, metrics, safety,
    report) is documented on :class:`Contract`.
    """

    def __init__(self, params: Any, node: int) -> None:
        self.params = params
        self.node = node

    def on_start(self, ctx: Context) -> None:
        """The node starts (time 0, or when it first joins)."""

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        """A message from ``src`` arrived intact."""

    def on_timer(self, ctx: Context, tag: Any) -> None:
        """A timer set with ``ctx.set_timer(delay, tag)`` fired."""

    def on_crash(self, ctx: Context) -> None:
        """The node is about to crash; whatever it sends or sets now is discarded."""

    def on_join(self, ctx: Context, bootstrap: int | None) -> None:
        """The node joins during the run (churn), told of one node that is up (or None).

        A join is a new session: fresh state and empty ``ctx.storage``. By default it
        starts like a node present from the beginning.
        """
        self.on_start(ctx)

    def on_leave(self, ctx: Context) -> None:
        """The node leaves gracefully (churn); what it sends now is still delivered."""

    def on_recover(self, ctx: Context) -> None:
        """The node restarts after a crash with fresh state and its old ``ctx.storage``."""
        self.on_start(ctx)


@dataclass(frozen=True)
class ProtocolSpec:
    """A registered protocol: its class and the parameter defaults its name implies."""

    name: str
    cls: type[Protocol] | type[BatchProtocol]
    presets: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def reference(self) -> str:
        """Where the class lives, ``"module:QualName"`` (recorded in the run row)."""
        return f"{self.cls.__module__}:{self.cls.__qualname__}"

    def make_params(self, values: dict[str, Any]) -> BaseModel:
        """Validate ``values`` (merged over the presets) into the protocol's Params model."""
        return self.cls.Params.model_validate({**self.presets, **values})


_REGISTRY: dict[str, ProtocolSpec] = {}
# built-in name -> the package that registers it (raysim.protocols registers its families
# on first use, and their names stay theirs meanwhile)
_RESERVED: dict[str, str] = {}
_P = TypeVar("_P", bound=type)


def reserve(names: dict[str, str]) -> None:
    """Keep each name of ``names`` for classes of the package it maps to (see
    :data:`raysim.protocols.BUILTIN`): any other class registering it is refused, as if
    the package had registered it already."""
    _RESERVED.update(names)


def register(name: str, *, presets: dict[str, Any] | None = None) -> Callable[[_P], _P]:
    """Class decorator: make a protocol available by ``name`` (e.g. ``gossip.push_pull``).

    ``presets`` are parameter defaults implied by the name; a class may be registered under
    several names with different presets.
    """

    def deco(cls: _P) -> _P:
        owner = _RESERVED.get(name)
        taken = owner is not None and not cls.__module__.startswith(owner + ".")
        if (name in _REGISTRY and _REGISTRY[name].cls is not cls) or (
            name not in _REGISTRY and taken
        ):
            raise ValueError(f"protocol name {name!r} is already registered")
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ProtocolSpec(name, cls, dict(presets or {}), doc[0] if doc else "")
        return cls

    return deco


def registered() -> dict[str, ProtocolSpec]:
    """The protocols registered so far, by name (a copy; see :func:`raysim.protocols.lookup`)."""
    return dict(_REGISTRY)


class BatchEvents(TypingProtocol):
    """A batch of events handed to a :class:`BatchProtocol` handler; all at distinct nodes.

    Columns (numpy arrays of equal length): ``node`` (ids), ``li`` (indexes into the
    protocol's state columns: ``node - lo``), ``time``, ``cause`` (the twin of
    :attr:`Context.cause`: each message's ``msg_id``, each timer's id, -1 for lifecycle
    events); for messages also ``src``, ``mtype`` (index into ``message_types``) and
    ``fields`` (one float64 array per name in ``fields``); for timers ``tags`` (a list).
    """

    node: Any
    li: Any
    time: Any
    cause: Any
    src: Any
    mtype: Any
    fields: dict[str, Any]
    tags: list[Any]


class BatchContext(TypingProtocol):
    """What a :class:`BatchProtocol` handler may do, for many nodes at once.

    Every method takes a batch's own columns (``ev.node``, ``ev.time`` or subsets of them
    selected with the same mask). Each node's random stream is the one a per-node protocol
    would see through :class:`Context`, draw for draw. ``seed`` is the run's seed.
    """

    n_nodes: int
    seed: int

    def send(self, src: Any, time: Any, dst: Any, mtype: int | Any, **fields: Any) -> Any:
        """Send one message per element (src node, send time, destination, type, fields).

        Returns the message ids (an int64 array), as :meth:`Context.send` would, in order.
        """

    def set_timer(self, node: Any, when: Any, tag: str) -> None:
        """Fire ``on_timer`` for each node at absolute time ``when`` (>= its event's time)."""

    def emit(
        self, node: Any, time: Any, name: str, value: Any, peer: Any = -1, ref: Any = -1
    ) -> None:
        """Record one observation per element (``peer``/``ref`` as in :meth:`Context.emit`).

        ``value``: a scalar of any :meth:`Context.emit` type (the same for every element), a
        1-D array of float, int or bool dtype (one number each), a list of strs, or vectors:
        a 2-D integer array (one row each) or a list of int sequences.
        """

    def random(self, node: Any) -> Any:
        """One float in [0, 1) from each node's stream (nodes distinct)."""

    def randrange(self, node: Any, n: int) -> Any:
        """One int in [0, n) from each node's stream (nodes distinct)."""

    def random_peer(self, node: Any) -> Any:
        """One uniformly random neighbour of each node (nodes distinct)."""


class BatchProtocol(Contract):
    """A protocol written over columns: state is numpy arrays over a shard's nodes.

    The engine calls each handler with a batch of events at *distinct* nodes, in the same
    total order as it calls a per-node :class:`Protocol` (a node's k-th event of a window is
    handled in the k-th batch), so a columnar protocol that does, element by element, what a
    per-node one does yields the same event log. Use it for protocols simple enough to
    express with numpy, where the per-event Python call would dominate the run.

    ``message_types`` names the messages; every message carries the float64 ``fields``.
    The rest of the contract is documented on :class:`Contract`.
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any, lo: int, hi: int) -> None:
        self.params = params
        self.lo = lo
        self.hi = hi

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """The nodes start."""

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """Messages arrived intact."""

    def on_timer(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """Timers fired."""

    def on_crash(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """The nodes are about to crash; whatever they send or set now is discarded."""

    def on_join(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """The nodes join (churn); ``ev.src`` holds each one's bootstrap node (-1 if none)."""
        self.on_start(ctx, ev)

    def on_leave(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """The nodes leave gracefully (churn); what they send now is still delivered."""

    def on_recover(self, ctx: BatchContext, ev: BatchEvents) -> None:
        """The nodes restart: reset their volatile columns, then start again."""
        self.on_start(ctx, ev)
