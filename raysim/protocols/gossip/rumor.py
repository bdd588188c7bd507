"""Rumor mongering with many rumors in flight, and anti-entropy as its backstop.

Implements the "complex epidemics" of A. Demers, D. Greene, C. Hauser, W. Irish, J. Larson,
S. Shenker, H. Sturgis, D. Swinehart and D. Terry, "Epidemic algorithms for replicated
database maintenance" (PODC 1987, §1.4), with its variations: push, pull or push-pull;
feedback or blind loss of interest; by counter or by coin, with parameter ``k``.

Theory of operation
-------------------
``rumors`` updates are injected, rumor r at site ``r mod N`` at tick
``r * inject_until // rumors``; each is a rumor of its own. (On the complete graph every site
is alike, so the origins need not be random; the seed drives the partners and coins.)
Per rumor a site is *susceptible* (has not heard it), *infective* (hot: spreads it) or
*removed* (knows it, no longer spreads it):

===========  ==========================================  ===========
phase        event                                       next phase
===========  ==========================================  ===========
susceptible  hears the rumor (or it is injected here)    infective
susceptible  learns it by anti-entropy                   removed
infective    loses interest (counter reaches k / coin)   removed
===========  ==========================================  ===========

Every ``period`` ticks (a *cycle*) each site calls one random partner. ``push``: the caller
sends its hot rumors; ``pull``: it asks, and the partner answers with its hot rumors;
``push_pull``: both. With ``feedback`` the receiver of rumors answers with the ones it
already knew, and the sender loses interest only in those ("unnecessary contacts"): with
``interest = "counter"`` after k of them, with ``"coin"`` with probability 1/k each time.
With ``reset`` (the default) the counter counts unnecessary contacts *in a row*: the
receiver also names the rumors that were news to it, and those counters start again. That
is the counter the paper's simulations used: its traffic bound k(2m-1) rests on "each
unnecessary message was sent by a site that, within the last k cycles, sent a necessary
message, or newly discovered the update", and only this counter reproduces its Table 1
(``reset = false`` is the counter of the mean-field analysis below).
Blind (``feedback = false``): the sender loses interest after every transmission of a
rumor regardless, after k (counter) or with probability 1/k (coin).

``phase = "synchronous"`` is the paper's model: every site's cycle starts at the same
multiple of ``period``, and every exchange of a cycle sees the state at its start — what a
site learns, and the interest it loses, take effect at the start of the next cycle (the
network's delay must stay below a third of the period). So feedback, too, is judged against
the cycle's start: two sites that push to the same susceptible site in one cycle both hear
"news". ``phase = "random"``: each site at its own phase, state changes at once.

With ``anti_entropy = m > 0`` every site also runs a push-pull anti-entropy exchange with a
random partner every m cycles (a digest of the rumors it knows, answered with the ones the
caller lacks, and vice versa); rumors learned this way are known but not hot, so rumors
spread fast and anti-entropy drives the residue to 0 (the paper's §1.5 combination).

The residue s of push with feedback and counter (k, ``reset = false``) is near the root of
s = exp(-(k+1)(1-s)) (the paper's §1.4 analysis); with ``reset`` and synchronous cycles it
follows the paper's simulations (s = e^-m for traffic m, Table 1).

Registered names: ``gossip.rumor`` (push, feedback, counter by default), and as presets
``gossip.rumor.blind_coin``, ``gossip.rumor.pull``, ``gossip.rumor.push_pull`` and
``gossip.rumor.backstop`` (anti-entropy every 4 cycles) and ``gossip.rumor.no_reset`` (the
counter without reset), so a sweep can name variants.

Observations: ``inject`` (value = rumor id) at the origin, ``learn`` (value = rumor id,
ref = 1 when learned by anti-entropy) at a site's first hearing, ``copies`` (value =
rumor copies in an update message, ref = 1 for anti-entropy). Per-rumor metrics come from
these rows (:func:`rumor_metrics`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import Field

from raysim.api.protocol import Context, Params, Protocol, register


class Rumors(NamedTuple):
    """Hot rumors; ``reply``: the receiver answers with its own hot rumors (push-pull)."""

    ids: tuple[int, ...]
    reply: bool


class Request(NamedTuple):
    """Pull: send me your hot rumors."""


class Feedback(NamedTuple):
    """The rumors of the last message the receiver already knew; ``new``: the ones it did
    not (sent only with ``interest = "counter"`` and ``reset``, to reset their counters)."""

    known: tuple[int, ...]
    new: tuple[int, ...] = ()


class Digest(NamedTuple):
    """Anti-entropy: every rumor the caller knows."""

    ids: tuple[int, ...]


class Missing(NamedTuple):
    """Anti-entropy: rumors the other lacks; ``reply`` asks for the caller's missing ones."""

    ids: tuple[int, ...]
    want: tuple[int, ...] | None


class RumorParams(Params):
    """Parameters of rumor mongering (times in ticks)."""

    mode: Literal["push", "pull", "push_pull"] = "push"
    feedback: bool = True
    interest: Literal["counter", "coin"] = "counter"
    k: int = Field(1, ge=1, description="unnecessary contacts (or 1/probability) per rumor")
    rumors: int = Field(10, ge=1, description="updates injected")
    inject_until: int = Field(1, ge=1, description="rumors start at ticks spread below this")
    period: int = Field(1000, ge=3, description="ticks per cycle")
    phase: Literal["synchronous", "random"] = "synchronous"
    anti_entropy: int = Field(0, ge=0, description="anti-entropy every m cycles; 0 = off")
    reset: bool = Field(True, description="counter: a useful contact resets the count, so "
                        "a site loses interest after k unnecessary contacts in a row")


CYCLE, INJECT = "cycle", "inject"


@register("gossip.rumor")
@register("gossip.rumor.blind_coin", presets={"feedback": False, "interest": "coin"})
@register("gossip.rumor.pull", presets={"mode": "pull"})
@register("gossip.rumor.push_pull", presets={"mode": "push_pull"})
@register("gossip.rumor.backstop", presets={"anti_entropy": 4})
@register("gossip.rumor.no_reset", presets={"reset": False})
class Rumor(Protocol):
    """Rumor mongering (Demers et al. 1987): push/pull, feedback/blind, counter/coin, k."""

    message_types: ClassVar[tuple[str, ...]] = ("Rumors", "Request", "Feedback", "Digest",
                                                "Missing")

    log_needs: ClassVar[str] = "observations"  # its checks and log metrics read obs rows

    Params: ClassVar[type[RumorParams]] = RumorParams
    checks: ClassVar[tuple[str, ...]] = ()
    report: ClassVar[str | None] = "raysim.analysis.replication:rumor_parts"

    def __init__(self, params: RumorParams, node: int) -> None:
        super().__init__(params, node)
        self.p = params
        self.known: set[int] = set()
        self.hot: dict[int, int] = {}  # rumor -> unnecessary contacts (counter) so far
        self.cycles = 0
        # synchronous phase: changes that take effect at the next cycle's start
        self.sync = params.phase == "synchronous"
        self.pending_hot: set[int] = set()
        self.pending_cold: set[int] = set()
        self.fresh: set[int] = set()  # synchronous: rumors learned during this cycle
        self.hot_at_start: tuple[int, ...] = ()

    @classmethod
    def check(cls, params: RumorParams, n_nodes: int) -> None:
        """Rumor origins are drawn among the nodes; nothing to cross-check but the size."""
        if n_nodes < 2:
            raise ValueError("rumor mongering needs at least 2 nodes")

    @classmethod
    def metrics(cls, params: RumorParams, stats: dict[str, Any]) -> dict[str, float]:
        """Messages per site."""
        return {"messages_per_node": stats["sent"] / stats["nodes"]}

    @classmethod
    def log_metrics(cls, params: RumorParams, events: Any, n_nodes: int) -> dict[str, float]:
        """Means over rumors of residue, traffic, t_ave and t_last (see :func:`rumor_metrics`)."""
        return rumor_metrics(params, events, n_nodes)

    @classmethod
    def safety(cls, params: RumorParams, events: Any) -> list[Any]:
        """Rumor mongering promises nothing that could be violated (a residue is allowed)."""
        return []

    # --- handlers -----------------------------------------------------------------------

    def on_start(self, ctx: Context) -> None:
        for r in range(self.node, self.p.rumors, ctx.n_nodes):  # rumor r starts at r mod N
            ctx.set_timer(r * self.p.inject_until // self.p.rumors, (INJECT, r))
        first = self.p.period if self.sync else 1 + ctx.rng.randrange(self.p.period)
        ctx.set_timer(first, CYCLE)

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if isinstance(tag, tuple):
            r = tag[1]
            ctx.emit("inject", r)
            self._learn(ctx, r, hot=True, via_ae=False, now=True)
            return
        ctx.set_timer(self.p.period, CYCLE)
        self.cycles += 1
        if self.sync:
            for r in sorted(self.pending_hot):
                self.hot.setdefault(r, 0)
            for r in self.pending_cold:
                self.hot.pop(r, None)
            self.pending_hot.clear()
            self.pending_cold.clear()
            self.fresh.clear()
        self.hot_at_start = tuple(sorted(self.hot))
        partner = ctx.random_peer()
        mode = self.p.mode
        if mode == "pull":
            ctx.send(partner, Request())
        elif self.hot_at_start or mode == "push_pull":
            self._push(ctx, partner, reply=mode == "push_pull")
        if self.p.anti_entropy and self.cycles % self.p.anti_entropy == 0:
            ctx.send(ctx.random_peer(), Digest(tuple(sorted(self.known))))

    def _push(self, ctx: Context, dst: int, reply: bool) -> None:
        ids = self.hot_at_start if self.sync else tuple(sorted(self.hot))
        ctx.send(dst, Rumors(ids, reply))
        if ids:
            ctx.emit("copies", len(ids), ref=0)
        if not self.p.feedback:
            for r in ids:
                self._unnecessary(ctx, r)

    def _learn(self, ctx: Context, r: int, hot: bool, via_ae: bool, now: bool = False) -> None:
        if r in self.known:
            return
        self.known.add(r)
        if self.sync and not now:
            self.fresh.add(r)
        ctx.emit("learn", r, ref=int(via_ae))
        if hot:
            if self.sync and not now:
                self.pending_hot.add(r)
            else:
                self.hot[r] = 0

    def _unnecessary(self, ctx: Context, r: int) -> None:
        """One unnecessary contact (feedback) or one transmission (blind) for rumor ``r``."""
        if r not in self.hot or r in self.pending_cold:
            return
        if self.p.interest == "counter":
            self.hot[r] += 1
            lose = self.hot[r] >= self.p.k
        else:
            lose = ctx.rng.random() < 1.0 / self.p.k
        if lose:
            if self.sync:
                self.pending_cold.add(r)
            else:
                del self.hot[r]

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        kind = type(msg)
        if kind is Rumors:
            # NOTE: synchronous cycles judge "already known" against the state at the cycle's
            # start: two sites that push a rumor to the same susceptible site in one cycle
            # both hear "that was news" (the paper's simulation; event order would make the
            # second an unnecessary contact and lose interest sooner).
            known, fresh = self.known, self.fresh
            already = tuple(r for r in msg.ids if r in known and r not in fresh)
            for r in msg.ids:
                self._learn(ctx, r, hot=True, via_ae=False)
            if self.p.feedback:
                new: tuple[int, ...] = ()
                if self.p.reset and self.p.interest == "counter" and len(already) < len(msg.ids):
                    new = tuple(r for r in msg.ids if r not in already)
                if already or new:
                    ctx.send(src, Feedback(already, new))
            if msg.reply:
                self._push(ctx, src, reply=False)
        elif kind is Request:
            if self.hot_at_start if self.sync else self.hot:
                self._push(ctx, src, reply=False)
        elif kind is Feedback:
            for r in msg.known:
                self._unnecessary(ctx, r)
            for r in msg.new if self.p.reset else ():
                if r in self.hot and r not in self.pending_cold:
                    self.hot[r] = 0  # a useful contact: the count starts again
        elif kind is Digest:
            theirs = set(msg.ids)
            give = tuple(sorted(self.known - theirs))
            want = tuple(sorted(theirs - self.known))
            ctx.send(src, Missing(give, want))
            if give:
                ctx.emit("copies", len(give), ref=1)
        elif kind is Missing:
            for r in msg.ids:
                self._learn(ctx, r, hot=False, via_ae=True)
            if msg.want:
                give = tuple(r for r in msg.want if r in self.known)
                ctx.send(src, Missing(give, None))
                ctx.emit("copies", len(give), ref=1)


def _cols(events: Any, name: str) -> tuple[np.ndarray, ...]:
    from raysim.protocols.replication.checks import obs

    o = obs(events, name)
    return o.time, o.node, o.value, o.ref


def rumor_metrics(params: RumorParams, events: Any, n_nodes: int) -> dict[str, float]:
    """Means over rumors: ``residue`` (share of sites that never heard it), ``traffic``
    (rumor copies sent per site, over all rumors divided by their number), ``t_ave`` and
    ``t_last`` (cycles from injection to a site's hearing: mean over the sites that heard
    it, and the last), ``residue_rumor_only`` (sites that heard it only by anti-entropy
    count as missed)."""
    it, _, iv, _ = _cols(events, "inject")
    lt, _ln, lv, lref = _cols(events, "learn")
    _, _, cv, cref = _cols(events, "copies")
    res, res_r, tave, tlast = [], [], [], []
    period = params.period
    for r in np.unique(iv.astype(np.int64)).tolist():
        t0 = int(it[iv == r][0])
        m = lv == r
        heard = int(m.sum())
        by_rumor = int((m & (lref == 0)).sum())
        res.append(1.0 - heard / n_nodes)
        res_r.append(1.0 - by_rumor / n_nodes)
        d = (lt[m & (lref == 0)] - t0) / period
        if params.phase == "synchronous":
            d = np.floor(d)  # the cycle during which a site heard it (cycle c starts at c·period)
        tave.append(float(d.mean()) if len(d) else float("nan"))
        tlast.append(float(d.max()) if len(d) else float("nan"))
    k = max(len(res), 1)
    return {
        "residue": float(np.mean(res)) if res else float("nan"),
        "residue_rumor_only": float(np.mean(res_r)) if res_r else float("nan"),
        "traffic": float(cv[cref == 0].sum()) / n_nodes / k,
        "traffic_anti_entropy": float(cv[cref == 1].sum()) / n_nodes / k,
        "t_ave": float(np.nanmean(tave)) if tave else float("nan"),
        "t_last": float(np.nanmean(tlast)) if tlast else float("nan"),
        "rumors": float(len(res)),
    }


def residue_fixed_point(k: int) -> float:
    """The root in (0, 1) of s = exp(-(k+1)(1-s)) (push, feedback, counter), by iteration."""
    s = 0.0
    for _ in range(10_000):
        s = float(np.exp(-(k + 1) * (1.0 - s)))
    return s
