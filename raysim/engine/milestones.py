"""Milestones and the stop rule, counted once per window from what the drivers recorded.

A milestone is an observation name whose first emission per node is counted
(``<name>_nodes`` and ``<name>_time`` in the run's row); the stop rule (``stop_when``)
holds when every local node that is up has emitted it. Both are counted from a window's
:class:`~raysim.engine.driver.Record`, the same way for both drivers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from raysim.engine.driver import Record
from raysim.log.schema import CRASH, LEAVE


class Milestones:
    """First emissions per local node of each milestone name, and the stop rule's count."""

    def __init__(self, names: Iterable[str], stop: str | None, lo: int, n_local: int) -> None:
        wanted = set(names) | ({stop} if stop else set())
        self.names: tuple[str, ...] = tuple(sorted(wanted))  # sorted: no hash-seed order
        self.stop = stop or None  # "" (no stop rule, e.g. from --set) is none
        self.lo = lo
        self.seen = {m: np.zeros(n_local, dtype=bool) for m in self.names}
        self.last = dict.fromkeys(self.names, -1)
        self.missing = 0  # local nodes up that have not emitted ``stop`` yet
        self._scratch = np.zeros(n_local, dtype=np.int64)

    def _firsts(self, li: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each node's first row of ``li``/``t`` (nodes ascending where there are repeats).

        NOTE: the rows nearly always name distinct nodes; a scatter and a gather over a
        scratch array prove it without ``np.unique``'s sort (the result is the same set).
        """
        pos = np.arange(len(li), dtype=np.int64)
        self._scratch[li] = pos
        if (self._scratch[li] == pos).all():
            return li, t
        first_li, first = np.unique(li, return_index=True)
        return first_li, t[first]

    def done(self) -> bool:
        """Whether the stop rule holds here (False without one)."""
        return bool(self.stop) and self.missing <= 0

    def update(
        self,
        rec: Record,
        codes: list[np.ndarray | int],
        code_of: Callable[[str], int],
        alive_of: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        """Count a window: ``codes`` are the name codes of ``rec.obs`` (per chunk)."""
        stop = self.stop
        seen_stop_before = None
        if stop is not None:
            seen_stop_before = self.seen[stop].copy() if rec.life else None
        new_stop: list[np.ndarray] = []
        for m in self.names:
            cm = code_of(m)
            seen = self.seen[m]
            for ob, c in zip(rec.obs, codes, strict=True):
                if isinstance(c, int):
                    if c != cm:
                        continue
                    li, t = ob.node - self.lo, ob.time
                else:
                    mask = c == cm
                    if not mask.any():
                        continue
                    li, t = ob.node[mask] - self.lo, ob.time[mask]
                new = ~seen[li]
                if not new.any():
                    continue
                li, t = li[new], t[new]
                first_li, t = self._firsts(li, t)
                seen[first_li] = True
                self.last[m] = max(self.last[m], int(t.max()))
                if m == stop:
                    new_stop.append(first_li)
        if stop is not None and (rec.life or new_stop):
            self._recount(rec, new_stop, seen_stop_before, alive_of)

    def _recount(
        self,
        rec: Record,
        new_stop: list[np.ndarray],
        seen_before: np.ndarray | None,
        alive_of: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        """missing = #(up and not seen): adjust by the nodes this window touched."""
        assert self.stop is not None
        seen = self.seen[self.stop]
        life_li = [nd - self.lo for _, _, nd, _, _ in rec.life]
        life_kind = [np.full(len(nd), k) for _, k, nd, _, _ in rec.life]
        life_seq = [q for *_, q in rec.life]
        touched = np.unique(np.concatenate([*life_li, *new_stop]))
        alive_after = alive_of(touched)
        alive_before = alive_after.copy()
        if life_li:
            li, kind, seq = (np.concatenate(x) for x in (life_li, life_kind, life_seq))
            order = np.lexsort((seq, li))  # each node's first lifecycle event of the window
            li, kind = li[order], kind[order]
            first = np.ones(len(li), dtype=bool)
            first[1:] = li[1:] != li[:-1]
            where = np.searchsorted(touched, li[first])
            alive_before[where] = np.isin(kind[first], (CRASH, LEAVE))
        before_seen = seen_before[touched] if seen_before is not None else seen[touched].copy()
        if seen_before is None:  # no lifecycle: the newly seen were unseen before
            for f in new_stop:
                before_seen[np.searchsorted(touched, f)] = False
        after = int((alive_after & ~seen[touched]).sum())
        before = int((alive_before & ~before_seen).sum())
        self.missing += after - before
