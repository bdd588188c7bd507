"""Byzantine variants of push-pull averaging (:mod:`raysim.protocols.gossip.averaging`).

A *liar* takes part in the exchanges like an honest node but always reports a fixed number
instead of its estimate and never updates it: the attack on gossip aggregation that
Jelasity et al. (2005) leave out of scope (they assume honest nodes). One liar is enough to
pull every honest estimate to its value, because averaging conserves the sum only if every
node does; the liar keeps re-injecting mass. ``liar`` reports the constant 1.0 (the top of
the honest hull, so the hull check cannot see it, yet every estimate drifts to 1) and
``extreme`` reports 100 (far outside it, so ``value_in_hull`` flags the honest nodes it
reaches).

Both implementations have their adversary: :class:`Liar` / :class:`ExtremeLiar` per node
(one object per Byzantine node) and :class:`LiarColumns` / :class:`ExtremeLiarColumns`
columnar (one object per shard, overriding the rows of its ``byzantine`` mask), and they
write the same event log. Byzantine nodes emit ``byzantine`` at start, so the analysis
(:mod:`raysim.analysis.byzantine`) can tell honest estimates from lies.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from raysim.api.protocol import BatchContext, BatchEvents, Context
from raysim.protocols.gossip.averaging import Averaging, AveragingColumns, AveragingParams

LIE = 1.0
EXTREME = 100.0


class Liar(Averaging):
    """A per-node liar: always reports :data:`LIE` and never averages."""

    lie: ClassVar[float] = LIE

    def __init__(self, params: AveragingParams, node: int) -> None:
        super().__init__(params, node)

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)  # same draws as an honest node, so the timers line up
        self.value = self.lie
        ctx.emit("byzantine")  # so the analysis knows who is honest

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        super().on_message(ctx, src, msg)
        self.value = self.lie


class ExtremeLiar(Liar):
    """A per-node liar that reports :data:`EXTREME`."""

    lie: ClassVar[float] = EXTREME


class LiarColumns(AveragingColumns):
    """The columnar liar: the rows of ``byzantine`` always report :data:`LIE`."""

    lie: ClassVar[float] = LIE

    def _pin(self) -> None:
        mask: np.ndarray = self.byzantine
        self.value[mask] = self.lie

    def on_start(self, ctx: BatchContext, ev: BatchEvents) -> None:
        super().on_start(ctx, ev)
        self._pin()
        m = self.byzantine[ev.li]
        ctx.emit(ev.node[m], ev.time[m], "byzantine", np.ones(int(m.sum())))

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        super().on_message(ctx, ev)
        self._pin()


class ExtremeLiarColumns(LiarColumns):
    """The columnar liar that reports :data:`EXTREME`."""

    lie: ClassVar[float] = EXTREME
