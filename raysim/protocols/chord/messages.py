"""Chord's messages: small NamedTuples, one class per message type so the log can count them.

The event log records a message's class name (``msg_type``), so every kind of traffic the
analysis must tell apart has its own class:

=================  ==========================================================================
traffic            message types
=================  ==========================================================================
stabilize          ``GetPred`` → ``PredReply`` (the successor's predecessor and successor list)
notify             ``Notify``
check_predecessor  ``Ping`` → ``Pong``
fix_fingers        the routing messages below with the prefix ``Finger``
join               the routing messages below with the prefix ``Join``
leave              ``Departing`` (to successor and predecessor)
keys               ``Keys`` (keys handed to a joining node, or to the successor on leave)
lookups            the routing messages below without a prefix
=================  ==========================================================================

Routing messages, per family (user lookups, fix_fingers lookups, join lookups):

* recursive mode: ``Lookup`` (hop by hop, each acknowledged by ``Ack``), then ``Found``
  (from the owner to the origin) or ``Failed`` (a hop ran out of retries);
* iterative mode: ``Query`` → ``Next`` (closer nodes) or ``Done`` (the answering node's
  successor list), then ``Probe`` → ``Alive`` to reach the owner.

The ``Finger…`` and ``Join…`` classes are subclasses made by :func:`_variant` and bound as
module attributes (so that they pickle by name between shards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


class GetPred(NamedTuple):
    """stabilize: ask the successor for its predecessor and successor list."""

    req: int


class PredReply(NamedTuple):
    """stabilize: the answer (``pred`` = -1 if the node has none)."""

    req: int
    pred: int
    succs: tuple[int, ...]


class Notify(NamedTuple):
    """notify: "I think I am your predecessor"."""


class Ping(NamedTuple):
    """check_predecessor: are you alive?"""

    req: int


class Pong(NamedTuple):
    """check_predecessor: yes."""

    req: int


class Departing(NamedTuple):
    """Graceful leave: the leaving node's predecessor (-1 if none) and successor list."""

    pred: int
    succs: tuple[int, ...]


class Keys(NamedTuple):
    """Stored keys (their identifiers) handed over to the receiver."""

    keys: tuple[int, ...]


class Lookup(NamedTuple):
    """Recursive routing of lookup ``lid`` of ``origin`` for ``key``; acknowledged by Ack.

    ``final`` is set on the last step, from the key's predecessor to its successor.
    """

    req: int
    lid: int
    origin: int
    key: int
    hops: int
    timeouts: int
    final: bool


class Ack(NamedTuple):
    """Recursive: the hop received the Lookup with this ``req``."""

    req: int


class Found(NamedTuple):
    """Recursive: ``owner`` (normally the sender) owns the key of lookup ``lid``."""

    lid: int
    owner: int
    hops: int
    timeouts: int


class Failed(NamedTuple):
    """Recursive: a hop gave lookup ``lid`` up after too many timeouts."""

    lid: int
    timeouts: int


class Query(NamedTuple):
    """Iterative: which node should I ask next about ``key``? ``avoid``: nodes the asker
    found dead during this lookup, to be routed around (the responder's successor list)."""

    req: int
    key: int
    avoid: tuple[int, ...] = ()


class Next(NamedTuple):
    """Iterative: closer nodes preceding the key, best first."""

    req: int
    nodes: tuple[int, ...]


class Done(NamedTuple):
    """Iterative: the key lies between me and my successor; here is my successor list."""

    req: int
    succs: tuple[int, ...]


class Probe(NamedTuple):
    """Iterative: the last step, to the key's owner."""

    req: int


class Alive(NamedTuple):
    """Iterative: the owner answers the Probe."""

    req: int


@dataclass(frozen=True)
class Family:
    """The routing message classes of one kind of lookup (user, fix_fingers or join)."""

    name: str
    Lookup: Any
    Ack: Any
    Found: Any
    Failed: Any
    Query: Any
    Next: Any
    Done: Any
    Probe: Any
    Alive: Any

    def classes(self) -> tuple[type, ...]:
        """All nine classes."""
        return (self.Lookup, self.Ack, self.Found, self.Failed, self.Query, self.Next,
                self.Done, self.Probe, self.Alive)


_BASES = (Lookup, Ack, Found, Failed, Query, Next, Done, Probe, Alive)


def _variant(base: type, prefix: str) -> type:
    """A subclass of the message ``base`` named ``prefix + base``, bound in this module."""
    name = prefix + base.__name__
    cls = type(name, (base,), {"__slots__": (), "__module__": __name__,
                               "__doc__": f"{base.__name__}, for a {prefix.lower()} lookup."})
    cls.__qualname__ = name
    globals()[name] = cls  # NOTE: bound by name so that pickle finds it on another shard
    return cls


USER = Family("lookup", *_BASES)
FINGER = Family("fix_fingers", *(_variant(b, "Finger") for b in _BASES))
JOIN = Family("join", *(_variant(b, "Join") for b in _BASES))
FAMILIES = (USER, FINGER, JOIN)  # indexed by a lookup's purpose code

MAINTENANCE: dict[str, tuple[str, ...]] = {
    "stabilize": ("GetPred", "PredReply"),
    "notify": ("Notify",),
    "check_predecessor": ("Ping", "Pong"),
    "fix_fingers": tuple(c.__name__ for c in FINGER.classes()),
    "join": tuple(c.__name__ for c in JOIN.classes()),
    "leave": ("Departing",),
    "keys": ("Keys",),
}
"""Message type names per kind of maintenance traffic (everything else is user lookups)."""

LOOKUP_TYPES: tuple[str, ...] = tuple(c.__name__ for c in USER.classes())

FAMILY_INDEX: dict[type, int] = {c: i for i, f in enumerate(FAMILIES) for c in f.classes()}
"""Routing message class -> index of its family in :data:`FAMILIES`."""
