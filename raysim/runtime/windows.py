"""The sequence of windows a run steps through, the same for every backend and layout.

Windows are aligned: window k is ``[k·L, (k+1)·L)`` clipped to the duration, L the
lookahead (the network's minimum delay). After each window every shard reports its
earliest pending event and the earliest delivery it sent to each shard
(:class:`~raysim.engine.spec.StepInfo`); :func:`after_window` turns those reports into the
next window, skipping empty stretches, or into the end of the run (the stop rule held, or
nothing is left to happen). :func:`coordinate` drives the shards from one place (the local
backend, and Ray's task path); the shards of a socket mesh (:mod:`raysim.runtime.mesh`)
each apply :func:`after_window` to the same reports and so walk the same windows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from raysim.engine.shard import NEVER, RunSpec, StepInfo

# submit(end, inbox) -> (next inbox, one list of items per destination shard; handle)
# collect(handle) -> per-shard StepInfo
Submit = Callable[[int, list[list[Any]]], tuple[list[list[Any]], Any]]
Collect = Callable[[Any], list[StepInfo]]
# progress(window end time, deliveries + timers handled so far): for a progress display only
Progress = Callable[[int, int], None]


def after_window(
    spec: RunSpec, k: int, end: int, infos: Sequence[StepInfo]
) -> tuple[int, int | None]:
    """What follows the window that ended at ``end``, from every shard's report on it.

    ``k`` is the number of windows started so far. Returns ``(k, None)`` to go on at window
    ``k`` (moved past the windows that hold no event), or ``(k, end_time)`` when the run is
    over: ``end`` if the stop rule held after this window, the duration if nothing is left
    to happen.
    """
    if spec.stop_when and all(i.done for i in infos):
        return k, end  # the stop rule held after this window
    nxt = min(min(i.next_time for i in infos), min(min(i.out_min_time) for i in infos))
    if nxt == NEVER:
        return k, spec.duration  # nothing is left to happen: the run lasts its whole duration
    if nxt >= k * spec.lookahead:
        k = nxt // spec.lookahead  # every window before holds no event
    return k, None


def coordinate(
    spec: RunSpec,
    n_shards: int,
    submit: Submit,
    collect: Collect,
    depth: int = 1,
    progress: Progress | None = None,
) -> int:
    """Drive windows until the duration, the stop rule, or no pending event; returns end time.

    Up to ``depth`` windows are in flight at once (the shards chain them through their
    outputs, so with Ray the coordinator is not on the critical path); the infos of
    finished windows tell it when it may jump over empty windows and when the run is over.
    The set of windows with events, and so the log, does not depend on ``depth``.
    ``progress``, if given, is called after each finished window (it sees, never steers).
    """
    lookahead, duration = spec.lookahead, spec.duration
    inbox: list[list[Any]] = [[] for _ in range(n_shards)]
    inflight: deque[tuple[int, Any]] = deque()
    k = 0  # next window to submit
    over = False
    end_time = duration
    while True:
        while not over and len(inflight) < depth and k * lookahead < duration:
            end = min((k + 1) * lookahead, duration)
            inbox, handle = submit(end, inbox)
            inflight.append((end, handle))
            k += 1
        if not inflight:
            break
        end, handle = inflight.popleft()
        infos = collect(handle)
        if over or any(i.stopped for i in infos):
            over = True
            continue
        if progress is not None:
            progress(end, sum(i.events for i in infos))
        k, stop = after_window(spec, k, end, infos)
        if stop is not None:
            over, end_time = True, stop
    return end_time if over else duration
