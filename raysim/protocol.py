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

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol as TypingProtocol

from pydantic import BaseModel, ConfigDict

from raysim.rng import NodeRng


class Context(TypingProtocol):
    """What a handler may do. The engine passes one; tests may pass a fake.

    Attributes ``node`` (this node's id), ``now`` (virtual time in ticks) and ``n_nodes``
    (size of the system) are read-only for the protocol.
    """

    node: int
    now: int
    n_nodes: int

    def send(self, dst: int, msg: object) -> None:
        """Send ``msg`` to node ``dst`` through the (faulty) network."""

    def set_timer(self, delay: int, tag: Hashable = None) -> int:
        """Call ``on_timer(ctx, tag)`` after ``delay`` ticks (>= 0); returns a timer id."""
        ...

    def cancel_timer(self, timer_id: int) -> None:
        """Cancel a pending timer; cancelling a fired or unknown timer does nothing."""

    def emit(self, name: str, value: float = 1.0) -> None:
        """Record an observation (a row of kind ``obs``) at this node and time."""

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


class Protocol:
    """Base class of a node's state machine. Override the handlers you need.

    ``Params`` names the pydantic model of the protocol's parameters (validated from the
    experiment file's ``[protocol]`` table); an instance is built per node as
    ``cls(params, node)``.
    """

    Params: ClassVar[type[BaseModel]] = NoParams

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

    def on_recover(self, ctx: Context) -> None:
        """The node restarts after a crash with fresh state and its old ``ctx.storage``."""
        self.on_start(ctx)


@dataclass(frozen=True)
class ProtocolSpec:
    """A registered protocol: its class and the parameter defaults its name implies."""

    name: str
    cls: type[Protocol]
    presets: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def make_params(self, values: dict[str, Any]) -> BaseModel:
        """Validate ``values`` (merged over the presets) into the protocol's Params model."""
        return self.cls.Params.model_validate({**self.presets, **values})


_REGISTRY: dict[str, ProtocolSpec] = {}


def register(
    name: str, *, presets: dict[str, Any] | None = None
) -> Callable[[type[Protocol]], type[Protocol]]:
    """Class decorator: make a protocol available by ``name`` (e.g. ``gossip.push_pull``).

    ``presets`` are parameter defaults implied by the name; a class may be registered under
    several names with different presets.
    """

    def deco(cls: type[Protocol]) -> type[Protocol]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"protocol name {name!r} is already registered")
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ProtocolSpec(name, cls, dict(presets or {}), doc[0] if doc else "")
        return cls

    return deco


def lookup(name: str) -> ProtocolSpec:
    """The protocol registered as ``name``; KeyError listing the known names otherwise."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown protocol {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def available() -> Iterable[ProtocolSpec]:
    """All registered protocols, sorted by name."""
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _load_builtins() -> None:
    # Importing the package registers the built-in protocols (no side effect at raysim import).
    import raysim.protocols  # noqa: F401
