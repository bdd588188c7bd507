"""The pending pools hand out each event once, when due, in the order their definition says.

:class:`raysim.engine.pending.Pending` keeps batches as time-sorted chunks; ``take(end)``
returns the rows due before ``end`` chunk by chunk, the chunks in the order of their
earliest pending time (then of arrival), each chunk's rows in time order (stable). That
order reaches the log (a window's delivery and timer rows are written in it), so the
compiled take loop and the pure-Python one must both give it exactly, with each column's
dtype kept. The reference below is that definition in plain Python lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raysim.engine import compiled
from raysim.engine.pending import Pending
from raysim.log.eventlog import StringTable


class _Reference:
    """Chunks as lists of (time, row index) rows, taken by the definition."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, list[int], list[Any]]] = []  # (arrival, times, rows)

    def add(self, cols: tuple[np.ndarray, ...], objs: list[Any]) -> None:
        if not len(cols[0]):
            return
        t = cols[0].tolist()
        order = sorted(range(len(t)), key=t.__getitem__)  # sorted() is stable
        rows = [(tuple(c[i] for c in cols), objs[i] if objs else None) for i in order]
        self.chunks.append((len(self.chunks), [t[i] for i in order], rows))

    def take(self, end: int) -> list[tuple[tuple[Any, ...], Any]]:
        due = [c for c in self.chunks if c[1] and c[1][0] < end]
        out = []
        for c in sorted(due, key=lambda c: (c[1][0], c[0])):
            k = sum(1 for x in c[1] if x < end)
            out.extend(c[2][:k])
            del c[1][:k], c[2][:k]
        return out


def _batch(rng: np.random.Generator, n: int, spread: int, narrow: bool, ncols: int) -> tuple:
    t = rng.integers(0, spread, n).astype(np.int64)
    cols = [
        t,
        rng.integers(-5, 5, n).astype(np.int32 if narrow else np.int64),  # layouts may differ
        rng.integers(0, 2, n).astype(np.int8),
        rng.integers(0, 2, n).astype(bool),
        rng.random(n),  # not packed: a float column
        rng.integers(0, 2**63, n, dtype=np.uint64),  # not packed: uint64 does not fit int64
        rng.random((n, 2)),  # not packed: a 2-D column (the senders' clocks)
    ]
    return tuple(cols[:ncols])


@pytest.mark.parametrize("mode", ["pure", "compiled"])
@pytest.mark.parametrize("ncols", [4, 7])  # 4: every column packed (the compiled chunks)
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 20), st.booleans())
def test_take_gives_the_defined_order_and_dtypes(
    mode: str, ncols: int, seed: int, steps: int, with_objs: bool
) -> None:
    if mode == "compiled":
        assert compiled.available(), "the compiled hot path is not built (make install)"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(compiled.ENV, "1" if mode == "pure" else "0")
        rng = np.random.default_rng(seed)
        pool, ref = Pending(ncols), _Reference()
        end = 0
        for step in range(steps):
            for _ in range(int(rng.integers(0, 4))):
                # now and then a batch above the compiled merge sort's 4096 rows, over a
                # short span (a counting sort) or a long one (numpy's sort)
                big = rng.random() < 0.03
                n = 5000 if big else int(rng.integers(0, 12))
                spread = int(rng.choice([40, 10**6])) if big else 1 + int(rng.integers(0, 40))
                cols = _batch(rng, n, spread, bool(rng.random() < 0.2), ncols)
                cols = (cols[0] + end, *cols[1:])
                objs = [("obj", step, i) for i in range(n)] if with_objs else []
                pool.add(cols, objs)
                ref.add(cols, objs)
            end += int(rng.integers(0, 15))
            got_cols, got_objs = pool.take(end)
            want = ref.take(end)
            assert len(got_cols) == ncols
            assert [len(c) for c in got_cols] == [len(want)] * ncols
            got_rows = list(zip(*(c.tolist() for c in got_cols), strict=True))
            want_rows = [tuple(np.asarray(v).tolist() for v in r) for r, _ in want]
            assert got_rows == want_rows
            if with_objs:
                assert got_objs == [o for _, o in want]
            if want:  # each column keeps the dtype it was added with
                assert got_cols[0].dtype == np.int64
                assert got_cols[2].dtype == np.int8 and got_cols[3].dtype == bool
                if ncols == 7:
                    assert got_cols[5].dtype == np.uint64
                    assert got_cols[6].shape == (len(want), 2)
        assert len(pool) == sum(len(c[1]) for c in ref.chunks)


def test_codes_of_the_tables_own_names_are_their_positions() -> None:
    table = StringTable()
    for name in ("Ping", "Pong", "lookup", "Ack"):
        table.code(name)
    assert table.codes(list(table.names)).tolist() == [0, 1, 2, 3]
    assert table.codes(table.names[:2]).tolist() == [0, 1]
    # any other list is looked up (and new names added), whatever its order
    assert table.codes(["Ack", "Ping", "New"]).tolist() == [3, 0, 4]
    assert table.codes(("Pong", "Ping")).tolist() == [1, 0]
    assert table.names == ["Ping", "Pong", "lookup", "Ack", "New"]
