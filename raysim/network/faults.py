"""The fault model as data: delay distributions, loss, duplication, corruption, partitions, crashes.

These are validated configuration values (pydantic models). They describe *what* the
network and the nodes do wrong; :mod:`raysim.network.router` applies them to message batches and
:mod:`raysim.engine.shard` schedules the crashes. Each model checks its own fields, so a bad
experiment file fails with the field's path and the allowed values.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TICKS = 2**62  # the latest virtual time a config may name: times plus delays fit int64
MAX_DELAY = 2**53  # ticks; far tails are clipped here so they never overflow int64

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Ticks = Annotated[int, Field(ge=0, le=MAX_TICKS)]
DelayTicks = Annotated[int, Field(ge=1, le=MAX_DELAY)]


class _Spec(BaseModel):
    # NOTE: allow_inf_nan=False: an inf rate or mean is a typo, never a fault model.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- delay distributions -------------------------------------------------------------------


def _ticks(x: np.ndarray) -> np.ndarray:
    """Round float delays to ticks, clipping the far tail at :data:`MAX_DELAY`."""
    return np.rint(np.minimum(x, float(MAX_DELAY))).astype(np.int64)



class ConstantDelay(_Spec):
    """Every message takes exactly ``value`` ticks."""

    dist: Literal["constant"] = "constant"
    value: DelayTicks = 1

    @property
    def lower_bound(self) -> int:
        """The smallest delay this distribution can produce."""
        return self.value

    def sample(self, u: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """Delays in ticks for uniforms ``u`` (``u2`` is a second independent stream)."""
        return np.full(u.shape, self.value, dtype=np.int64)


class UniformDelay(_Spec):
    """Delays uniform on the integers ``low..high``."""

    dist: Literal["uniform"]
    low: DelayTicks
    high: DelayTicks

    @model_validator(mode="after")
    def _ordered(self) -> UniformDelay:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    @property
    def lower_bound(self) -> int:
        """The smallest delay this distribution can produce."""
        return self.low

    def sample(self, u: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """Delays in ticks for uniforms ``u``."""
        span = self.high - self.low + 1
        return self.low + np.minimum((u * span).astype(np.int64), span - 1)


class ExponentialDelay(_Spec):
    """``min`` plus an exponential of mean ``mean``, rounded to ticks."""

    dist: Literal["exponential"]
    mean: float = Field(gt=0)
    min: DelayTicks = 1

    @property
    def lower_bound(self) -> int:
        """The smallest delay this distribution can produce."""
        return self.min

    def sample(self, u: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """Delays in ticks by inversion of the exponential CDF."""
        return self.min + _ticks(-self.mean * np.log1p(-u))


class LogNormalDelay(_Spec):
    """A log-normal with the given ``median`` and shape ``sigma``, at least ``min`` ticks."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(gt=0)
    min: DelayTicks = 1

    @property
    def lower_bound(self) -> int:
        """The smallest delay this distribution can produce."""
        return self.min

    def sample(self, u: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """Delays in ticks; the normal deviate comes from Box-Muller over (u, u2)."""
        z = np.sqrt(-2.0 * np.log1p(-u)) * np.cos(2.0 * math.pi * u2)
        with np.errstate(over="ignore"):
            d = self.median * np.exp(self.sigma * z)
        return np.maximum(_ticks(d), self.min)


class ParetoDelay(_Spec):
    """A Pareto (type I) with tail index ``alpha`` and minimum ``scale`` ticks."""

    dist: Literal["pareto"]
    alpha: float = Field(gt=0)
    scale: DelayTicks = 1
    cap: int | None = Field(None, ge=1, le=MAX_DELAY, description="optional upper bound in ticks")

    @model_validator(mode="after")
    def _cap(self) -> ParetoDelay:
        if self.cap is not None and self.cap < self.scale:
            raise ValueError(f"cap ({self.cap}) must be >= scale ({self.scale})")
        return self

    @property
    def lower_bound(self) -> int:
        """The smallest delay this distribution can produce."""
        return self.scale

    def sample(self, u: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """Delays in ticks by inversion of the Pareto CDF."""
        with np.errstate(over="ignore"):
            d = np.floor(self.scale * np.power(1.0 - u, -1.0 / self.alpha))
        cap = float(self.cap) if self.cap is not None else 2.0**53
        return np.clip(d, self.scale, cap).astype(np.int64)


Delay = Annotated[
    ConstantDelay | UniformDelay | ExponentialDelay | LogNormalDelay | ParetoDelay,
    Field(discriminator="dist"),
]

# --- node sets ------------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_node_set(spec: list[int] | str, n_nodes: int, where: str) -> np.ndarray:
    """A boolean mask of the nodes named by ``spec``: a list of ids or ``"0-9,20,30-39"``."""
    mask = np.zeros(n_nodes, dtype=bool)
    if isinstance(spec, str):
        for part in spec.split(","):
            m = _RANGE.match(part)
            if not m:
                raise ValueError(f"{where}: cannot read node range {part!r} (use e.g. '0-9,20')")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo or hi >= n_nodes:
                raise ValueError(f"{where}: range {part.strip()!r} is outside 0..{n_nodes - 1}")
            mask[lo : hi + 1] = True
        return mask
    # Checked as Python ints first: numpy would overflow on ids beyond int64.
    bad = [i for i in spec if not 0 <= i < n_nodes]
    if bad:
        raise ValueError(f"{where}: node id {bad[0]} is outside 0..{n_nodes - 1}")
    mask[np.asarray(spec, dtype=np.int64)] = True
    return mask


NodeSet = list[int] | str

# --- faults ---------------------------------------------------------------------------------


class Partition(_Spec):
    """Messages between node sets ``a`` and ``b`` are lost while ``start <= t < end``.

    ``b`` defaults to every node not in ``a``. ``direction = "a_to_b"`` makes the partition
    one-way: only messages from ``a`` to ``b`` are lost.
    """

    start: Ticks = 0
    end: int | None = Field(
        None, ge=0, le=MAX_TICKS, description="exclusive; none = until the run ends"
    )
    a: NodeSet
    b: NodeSet | None = None
    direction: Literal["both", "a_to_b"] = "both"

    @model_validator(mode="after")
    def _window(self) -> Partition:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class Crash(_Spec):
    """Crash nodes at time ``at``; with ``recover_at`` they recover (crash-recovery).

    Name the nodes with exactly one of ``node``, ``nodes`` (ids or ranges) or ``fraction``
    (a seeded random choice of that share of all nodes).
    """

    at: Ticks
    recover_at: int | None = Field(None, ge=1, le=MAX_TICKS)
    node: int | None = Field(None, ge=0, le=MAX_TICKS)
    nodes: NodeSet | None = None
    fraction: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_target(self) -> Crash:
        given = [x is not None for x in (self.node, self.nodes, self.fraction)]
        if sum(given) != 1:
            raise ValueError("give exactly one of node, nodes or fraction")
        if self.recover_at is not None and self.recover_at <= self.at:
            raise ValueError(f"recover_at ({self.recover_at}) must be after at ({self.at})")
        return self


class SessionLength(_Spec):
    """A distribution of session (or down-time) lengths, in ticks.

    ``exponential(mean)``, ``pareto(alpha, scale)`` (minimum ``scale``) or
    ``weibull(shape, scale)``; every draw is at least 1 tick.
    """

    dist: Literal["exponential", "pareto", "weibull"]
    mean: float | None = Field(None, gt=0)
    alpha: float | None = Field(None, gt=0)
    shape: float | None = Field(None, gt=0)
    scale: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _params(self) -> SessionLength:
        need = {
            "exponential": ("mean",),
            "pareto": ("alpha", "scale"),
            "weibull": ("shape", "scale"),
        }
        missing = [f for f in need[self.dist] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{self.dist} needs {', '.join(need[self.dist])}")
        return self

    def sample(self, u: float) -> int:
        """The length for one uniform draw ``u`` in [0, 1) (inversion of the CDF)."""
        if self.dist == "exponential":
            assert self.mean is not None
            x = -self.mean * math.log1p(-u)
        elif self.dist == "pareto":
            assert self.alpha is not None and self.scale is not None
            x = self.scale * (1.0 - u) ** (-1.0 / self.alpha)
        else:
            assert self.shape is not None and self.scale is not None
            x = self.scale * (-math.log1p(-u)) ** (1.0 / self.shape)
        return max(1, round(min(x, 2.0**62)))


class Churn(_Spec):
    """Nodes joining and leaving during the run.

    ``initial`` is the share of nodes up at time 0 (a seeded choice); the others are absent
    until they join. Models: ``poisson`` (joins and departures each at ``rate`` per second of
    virtual time), ``sessions`` (every node alternates sessions and down-times drawn from
    ``session`` and ``downtime``), ``trace`` (a CSV file of ``time,node,event`` rows with
    event ``join``, ``leave`` or ``fail``). A departure is a graceful ``leave`` (the node
    runs its leave handler) or a silent ``fail``, as ``departure`` says. Churn acts between
    ``start`` and ``end``.
    """

    model: Literal["none", "poisson", "sessions", "trace"] = "none"
    initial: float = Field(1.0, ge=0.0, le=1.0)
    rate: float = Field(
        0.0, ge=0.0, le=1e6, description="poisson: joins and departures per second"
    )
    session: SessionLength | None = None
    downtime: SessionLength | None = None
    trace: str | None = None
    departure: Literal["fail", "leave"] = "fail"
    start: Ticks = 0
    end: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _model_fields(self) -> Churn:
        if self.model == "poisson" and self.rate <= 0:
            raise ValueError("poisson churn needs rate > 0")
        if self.model == "sessions" and (self.session is None or self.downtime is None):
            raise ValueError("sessions churn needs session and downtime")
        if self.model == "trace" and not self.trace:
            raise ValueError("trace churn needs trace = 'file.csv'")
        return self


class Faults(_Spec):
    """Everything that goes wrong: per-message faults, partitions, crashes and churn."""

    loss: Probability = 0.0
    duplicate: Probability = Field(0.0, description="probability the network adds one copy")
    corrupt: Probability = Field(0.0, description="probability a copy arrives corrupted")
    partitions: list[Partition] = Field(default_factory=list)
    crashes: list[Crash] = Field(default_factory=list)
    churn: Churn = Churn()


def check_node_sets(faults: Faults, n_nodes: int) -> None:
    """Every node a fault names is a node of the network; ValueError naming the field if not."""
    for i, p in enumerate(faults.partitions):
        parse_node_set(p.a, n_nodes, f"faults.partitions.{i}.a")
        if p.b is not None:
            parse_node_set(p.b, n_nodes, f"faults.partitions.{i}.b")
    for i, c in enumerate(faults.crashes):
        if c.node is not None and c.node >= n_nodes:
            raise ValueError(
                f"faults.crashes.{i}.node: node {c.node} is outside 0..{n_nodes - 1}"
            )
        if c.nodes is not None:
            parse_node_set(c.nodes, n_nodes, f"faults.crashes.{i}.nodes")
