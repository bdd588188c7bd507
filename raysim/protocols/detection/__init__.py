"""Failure detection: heartbeats with a fixed timeout, ◇P, φ accrual, and SWIM.

Importing the package registers ``detection.heartbeat``, ``detection.eventually_perfect``,
``detection.phi`` and ``detection.swim``. All report ``suspect`` and ``trust`` observations
with the suspected node as ``peer``.
"""

from raysim.protocols.detection import heartbeat, swim

__all__ = ["heartbeat", "swim"]
