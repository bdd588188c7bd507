"""The event log's one schema: the contract between the engine, the analysis and users.

Every row is one event at one node. Parameters are never repeated on event rows: they live
once in ``runs.parquet``, joined on ``run_id`` (the hive partition of the event files).

=========  =======================  =====================================================
column     type                     meaning
=========  =======================  =====================================================
time       int64                    virtual time in ticks
kind       dictionary<string>       one of :data:`KINDS` (below)
node       int64                    the node where the event happens
peer       int64                    the other end of a message, -1 if none
msg_id     int64                    message identity ``src * 2**32 + per-sender sequence``;
                                    a timer's per-node id for ``timer``; -1 if none
msg_type   dictionary<string>       the message's class name, or the timer's tag
name       dictionary<string>       observation name (``obs``), or drop reason (``drop``)
value      float64                  observation value, or a send's network delay in ticks
=========  =======================  =====================================================

Kinds: ``start`` (node started), ``send`` (node sent to peer; value = delay the network
chose), ``deliver`` (message handed to the receiver), ``drop`` (name = ``loss``,
``partition`` or ``crashed``: message never delivered), ``duplicate`` (the network made an
extra copy; value = the copy's delay), ``corrupt`` (receiver saw a checksum failure and
dropped it), ``timer`` (a timer fired), ``obs`` (an observation the protocol emitted;
``peer`` and ``msg_id`` carry the optional ``peer`` and ``ref`` of the emit), ``crash`` and
``recover`` (crash-recovery; a churn failure is a ``crash``), ``join`` (a node joined;
``peer`` = the bootstrap node it was given, -1 if none was up) and ``leave`` (graceful
departure).

Message rows live where the decision is made: ``send``, ``duplicate`` and network drops
(``loss``, ``partition``) at the sender at send time; ``deliver``, ``corrupt`` and
``drop``/``crashed`` at the receiver at delivery time.
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
)
KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}

START, SEND, DELIVER, DROP, DUPLICATE, CORRUPT, TIMER, OBS, CRASH, RECOVER, JOIN, LEAVE = range(
    len(KINDS)
)

DROP_REASONS: tuple[str, ...] = ("loss", "partition", "crashed")

_DICT = pa.dictionary(pa.int32(), pa.string())

EVENT_SCHEMA = pa.schema(
    [
        pa.field("time", pa.int64(), nullable=False),
        pa.field("kind", _DICT, nullable=False),
        pa.field("node", pa.int64(), nullable=False),
        pa.field("peer", pa.int64(), nullable=False),
        pa.field("msg_id", pa.int64(), nullable=False),
        pa.field("msg_type", _DICT),
        pa.field("name", _DICT),
        pa.field("value", pa.float64()),
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)

# The canonical order of an event log: a total order independent of which shard wrote a row.
CANONICAL_SORT: tuple[str, ...] = (
    "time",
    "node",
    "kind",
    "msg_id",
    "peer",
    "msg_type",
    "name",
    "value",
)

LOG_LEVELS: tuple[str, ...] = ("all", "observations", "none")
