"""The replication family: retry-with-ack, anti-entropy over CRDTs, crash-recovery log rebuild."""

from raysim.protocols.replication import anti_entropy, log_rebuild, retry_ack

__all__ = ["anti_entropy", "log_rebuild", "retry_ack"]
