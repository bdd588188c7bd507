"""The errors raysim reports to users."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad input (experiment file, parameter, path, results directory): exit code 2.

    The message is one line naming what is wrong, where, and what is allowed.
    """


class ProtocolError(Exception):
    """An exception raised inside a protocol handler, with where and when it happened."""

    def __init__(self, run_id: str, node: int, time: int, event: str, tb: str) -> None:
        super().__init__(
            f"run {run_id}: protocol handler failed at node {node}, time {time}, "
            f"while handling {event}\n{tb}"
        )
        self.run_id = run_id
        self.node = node
        self.time = time
        self.event = event
        self.traceback = tb

    def __reduce__(self) -> tuple[type, tuple[str, int, int, str, str]]:
        return (ProtocolError, (self.run_id, self.node, self.time, self.event, self.traceback))


class RunFailed(Exception):
    """A run that could not finish for a reason outside its protocol (a shard actor died).

    The message is one line naming the run; ``detail`` holds the full story (Ray's error).
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (RunFailed, (str(self), self.detail))
