"""The event log's one schema: the contract between the engine, the analysis and users.

Every row is one event at one node. Parameters are never repeated on event rows: they live
once in ``runs.parquet``, joined on ``run_id`` (the hive partition of the event files).

==========  =======================  ====================================================
column      type                     meaning
==========  =======================  ====================================================
time        int64                    virtual time in ticks
kind        dictionary<string>       one of :data:`KINDS` (below)
node        int64                    the node where the event happens
seq         int64                    the node's own event sequence number (its program
                                     order, from 0, over the whole run); see below
cause       int64                    ``send`` rows: the ``seq`` of the event at the same
                                     node whose handler sent the message; -1 otherwise
peer        int64                    the other end of a message, -1 if none
msg_id      int64                    message identity ``src * 2**32 + per-sender sequence``;
                                     a timer's per-node id for ``timer``; -1 if none
msg_type    dictionary<string>       the message's class name, or the timer's tag
name        dictionary<string>       observation name (``obs``), or drop reason (``drop``)
value       float64                  ``obs``: the value if it is a number (int and bool
                                     values too, as floats), NaN for str and vector
                                     values; ``send``: the network delay in ticks (NaN if
                                     the message was dropped); ``duplicate``: the copy's
                                     delay; NaN otherwise
value_type  string                   ``obs``: one of :data:`VALUE_TYPES` but ``float``;
                                     null for a float observation and every other row
value_int   int64 (nullable)         ``obs`` of type ``int`` or ``bool`` (0/1): the exact
                                     value; null otherwise
value_str   string                   ``obs`` of type ``str``: the value; null otherwise
value_vec   list<int64> (nullable)   ``obs`` of type ``vec``: the vector; null otherwise
lamport     int64                    only with ``[log] causality = "lamport"`` or
                                     ``"vector"``: the node's Lamport time (below)
vclock      list<int64>              only with ``[log] causality = "vector"``: the node's
                                     vector clock, one entry per node (dense; see below)
==========  =======================  ====================================================

The engine's clocks (``[log] causality``; :mod:`raysim.engine.causality`). With the
default ``"none"`` the log has exactly the columns above without ``lamport`` and
``vclock``. Otherwise the engine keeps Algorithms 5 and 6 for every node by itself (the
protocol does nothing; the sender's clock travels with each message) and every row
carries a clock:

=========================================  =============================================
rows                                       clock
=========================================  =============================================
``start``, ``crash``, ``recover``,         a local event: ticks (``L + 1``; ``V[i] + 1``)
``join``, ``leave``, ``timer``
``send``                                   ticks; the message carries the new clock
``deliver``                                ``max(own, message's)`` then ticks
``obs``, ``corrupt``, ``drop``/``crashed``  the node's current clock, no tick
``drop``/``loss``, ``drop``/``partition``,  the clock of the send they are about (the same
``duplicate``, ``byzantine``                ``(node, seq)``)
=========================================  =============================================

So the clock is a function of ``(node, seq)``, and a → b ⇔ V(a) < V(b) holds among the
ticking rows (an observation shares the clock of the event before it). The clock is kept
across a crash (program order spans the whole run). ``vclock`` is dense ``list<int64>``
written with dictionary pages and zstd (measured smaller than a sparse index/value pair
once the clocks fill up; README, performance); vector mode is limited to 20 000 nodes.

Kinds: ``start`` (node started), ``send`` (node sent to peer; value = delay the network
chose), ``deliver`` (message handed to the receiver), ``drop`` (name = ``loss``,
``partition`` or ``crashed``: message never delivered), ``duplicate`` (the network made an
extra copy; value = the copy's delay), ``corrupt`` (receiver saw a checksum failure and
dropped it), ``timer`` (a timer fired), ``obs`` (an observation the protocol emitted;
``peer`` and ``msg_id`` carry the optional ``peer`` and ``ref`` of the emit), ``crash`` and
``recover`` (crash-recovery; a churn failure is a ``crash``), ``join`` (a node joined;
``peer`` = the bootstrap node it was given, -1 if none was up) and ``leave`` (graceful
departure), ``byzantine`` (a Byzantine node misbehaved with a message it sent, see
:mod:`raysim.network.byzantine`: ``name`` = the behaviour, ``drop``, ``delay``,
``replay``, ``forge`` or ``misdirect``; ``peer`` = the destination, the added one for
``misdirect``; ``value`` = the extra ticks for ``delay`` and ``replay``, the forged sender
id for ``forge``; at the Byzantine node, at the send time, with the send's ``seq``).

Message rows live where the decision is made: ``send``, ``duplicate`` and network drops
(``loss``, ``partition``) at the sender at send time; ``deliver``, ``corrupt`` and
``drop``/``crashed`` at the receiver at delivery time.

The per-node sequence ``seq``: every event at a node takes the node's next number, in the
order they happen there (the engine's total order, then program order inside a handler):
a handled event (``start``, ``crash``, ``recover``, ``join``, ``leave``, ``deliver``,
``timer``), a message that arrives and is not handled (``corrupt``, ``drop``/``crashed``),
and each ``send`` and ``obs`` a handler makes, in the order it makes them. So same-tick
events keep their order, and ``(node, seq)`` orders a node's history. The network's
decisions about a send (``drop``/``loss``, ``drop``/``partition``, ``duplicate``) are not
events of their own: they carry the ``seq`` of the send they decide about (``cause`` -1).
Sends and observations made in ``on_crash`` are discarded with the crash but keep the
numbers they took, and a cancelled or stale timer takes none. ``seq`` counts events
whatever the log level, so an observations-only log has gaps. It is a function of the
node's history alone, so it is the same on every backend, layout and path (per-node or
columnar).

``value_type`` and ``value_str`` are plain strings in the Arrow schema (so pandas reads
them as objects, whatever the row order of a part file) and dictionary-encoded in the
Parquet file (so a repeated value costs a few bits).

Observation values (``ctx.emit(name, value)``): an int (int64 range), a float (not NaN),
a bool, a str of at most :data:`MAX_STR` characters, or a sequence of ints (a vector, e.g.
a vector clock; a list, tuple or 1-D integer numpy array). Anything else is an error in the
handler that emitted it.
"""

from __future__ import annotations

import pyarrow as pa

KINDS: tuple[str, ...] = (
    "start",
    "send",
    "deliver",
    "drop",
    "duplicate",
    "corrupt",
    "timer",
    "obs",
    "crash",
    "recover",
    "join",
    "leave",
    "byzantine",
)
KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}

(START, SEND, DELIVER, DROP, DUPLICATE, CORRUPT, TIMER, OBS, CRASH, RECOVER, JOIN, LEAVE,
 BYZANTINE) = range(len(KINDS))

DROP_REASONS: tuple[str, ...] = ("loss", "partition", "crashed")

# Observation value types, in the order of their codes (``value_type``).
VALUE_TYPES: tuple[str, ...] = ("float", "int", "bool", "str", "vec")
V_FLOAT, V_INT, V_BOOL, V_STR, V_VEC = range(len(VALUE_TYPES))
MAX_STR = 256  # characters in a str observation value

_DICT = pa.dictionary(pa.int32(), pa.string())

EVENT_SCHEMA = pa.schema(
    [
        pa.field("time", pa.int64(), nullable=False),
        pa.field("kind", _DICT, nullable=False),
        pa.field("node", pa.int64(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("cause", pa.int64(), nullable=False),
        pa.field("peer", pa.int64(), nullable=False),
        pa.field("msg_id", pa.int64(), nullable=False),
        pa.field("msg_type", _DICT),
        pa.field("name", _DICT),
        pa.field("value", pa.float64()),
        pa.field("value_type", pa.string()),
        pa.field("value_int", pa.int64()),
        pa.field("value_str", pa.string()),
        pa.field("value_vec", pa.list_(pa.int64())),
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)

CAUSALITY_MODES: tuple[str, ...] = ("none", "lamport", "vector")

# The engine's clocks (``[log] causality``), appended to EVENT_SCHEMA when tracked.
CLOCK_FIELDS: tuple[pa.Field, ...] = (
    pa.field("lamport", pa.int64()),
    pa.field("vclock", pa.list_(pa.int64())),
)


def event_schema(causality: str = "none") -> pa.Schema:
    """The schema of a log written with ``[log] causality = causality``.

    ``"none"`` is :data:`EVENT_SCHEMA` itself (a log without clocks is what it always was);
    ``"lamport"`` adds ``lamport``; ``"vector"`` adds ``lamport`` and ``vclock``.
    """
    extra = {"none": 0, "lamport": 1, "vector": 2}[causality]
    schema = EVENT_SCHEMA
    for f in CLOCK_FIELDS[:extra]:
        schema = schema.append(f)
    return schema


# What the analysis reads: every column any log may have (a missing one reads as null).
READ_SCHEMA = event_schema("vector")

# The canonical order of an event log: a total order independent of which shard wrote a row.
# (node, seq, kind) alone is unique; time comes first so a sorted log reads forward in time.
CANONICAL_SORT: tuple[str, ...] = (
    "time",
    "node",
    "seq",
    "kind",
    "msg_id",
    "peer",
    "msg_type",
    "name",
    "value",
)

LOG_LEVELS: tuple[str, ...] = ("all", "observations", "none")
