"""Staging folders that know whether their owner is alive.

A run writes its event files into a hidden staging folder (``events/.staging-<run_id>-<hex>``)
and renames it into place when it has finished. The process that runs the run (the driver
of ``raysim run``, or the sweep task) holds an exclusive ``flock`` on the folder itself for as
long as it lives, so anyone can tell a live staging folder from one left by a killed process:

- the next run into the same results directory removes every staging folder whose lock is
  free (:func:`remove_dead`), so nothing a killed run wrote stays behind;
- Ray shard actors check the lock between windows (:func:`owner_gone`) and stop writing and
  remove the folder as soon as their driver is gone, instead of running on until Ray
  notices the dead owner.

The folder is created under a name no reader or cleaner looks at, locked, and only then
renamed to its staging name (the lock follows the inode), so there is no moment at which a
staging folder exists unlocked while its owner lives.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
import uuid
from pathlib import Path

STAGING = re.compile(r"^\.staging-([0-9A-Za-z_-]+)-[0-9a-f]+$")
_CREATING = ".creating-"


class Staging:
    """A locked staging folder: ``path`` while the run writes, released by :meth:`close`."""

    def __init__(self, events: Path, run_id: str) -> None:
        events.mkdir(parents=True, exist_ok=True)
        tmp = events / f"{_CREATING}{uuid.uuid4().hex}"
        tmp.mkdir()
        self._fd = os.open(tmp, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.path = events / f".staging-{run_id}-{uuid.uuid4().hex[:8]}"
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Release the lock (the folder itself is renamed or removed by the caller)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Remove the folder and release the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.close()


def owner_gone(path: Path) -> bool:
    """Whether nobody holds the lock of the staging folder ``path`` (its owner died).

    A folder that no longer exists counts as gone too: it was published or cleaned.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def remove_dead(events: Path) -> int:
    """Remove the staging folders under ``events`` whose owner is gone; returns how many."""
    removed = 0
    try:
        entries = list(events.iterdir())
    except OSError:
        return 0
    for p in entries:
        # A folder being created is unlocked for an instant: only old ones are leftovers.
        creating = p.name.startswith(_CREATING) and _age(p) > 60.0
        if (STAGING.match(p.name) or creating) and p.is_dir() and _remove_if_unlocked(p):
            removed += 1
    return removed


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _remove_if_unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # NOTE: removed while holding the lock, so no one can adopt it halfway.
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def remove_when_dead(events: Path, run_ids: set[str], timeout: float) -> bool:
    """Remove the staging folders of ``run_ids`` under ``events`` as their owners die (a
    killed worker releases its lock when its process ends); True if none is left within
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        remove_dead(events)
        try:
            left = [p for p in events.iterdir()
                    if (m := STAGING.match(p.name)) and m.group(1) in run_ids]
        except OSError:
            return True
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
