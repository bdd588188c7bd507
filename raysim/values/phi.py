"""The φ of the accrual failure detector (Hayashibara, Défago, Yared & Katayama 2004).

φ(t) = -log10(1 - F(t)), where F is the normal CDF with the mean and standard deviation of
the heartbeat inter-arrival times observed so far and t is the time since the last heartbeat:
φ = 1 means a 10 % chance that a heartbeat this late would still come, φ = 2 a 1 % chance,
and so on. A monitor suspects the peer once φ crosses a threshold.

F is the logistic approximation ``1 / (1 + exp(-y (1.5976 + 0.070566 y²)))``, y = (t - μ)/σ
(Bowling et al. 2009; error below 1.4·10⁻⁴), evaluated as Akka's
``PhiAccrualFailureDetector`` does, so that φ stays finite and precise far in the tail and
is exactly 0 far before the mean. It matches Akka's published test vectors
(``akka-remote/src/test/scala/akka/remote/AccrualFailureDetectorSpec.scala``).
"""

from __future__ import annotations

import math
from typing import Any, overload

import numpy as np


@overload
def phi(elapsed: float, mean: float, std: float) -> float: ...
@overload
def phi(elapsed: np.ndarray, mean: Any, std: Any) -> np.ndarray: ...


def phi(elapsed: Any, mean: Any, std: Any) -> Any:
    """φ for ``elapsed`` time since the last heartbeat, inter-arrival ``mean`` and ``std``.

    Scalars give a float; arrays (broadcast together) give an array. ``std`` must be > 0.
    """
    if isinstance(elapsed, int | float) and isinstance(mean, int | float) and isinstance(
        std, int | float
    ):
        return _phi_scalar(float(elapsed), float(mean), float(std))
    t = np.asarray(elapsed, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    if np.any(~(s > 0)):
        raise ValueError(f"phi: std must be > 0 (got {std!r})")
    y = (t - m) / s
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the unused branch
        e = np.exp(-y * (1.5976 + 0.070566 * y * y))
        late = -np.log10(e / (1.0 + e))
        early = -np.log10(1.0 - 1.0 / (1.0 + e))
    out = np.where(t > m, late, early) + 0.0  # + 0.0 turns -0.0 into 0.0
    if out.ndim == 0:
        return float(out)
    return out


def _phi_scalar(t: float, m: float, s: float) -> float:
    """The same formula with :mod:`math` (NOTE: ~20× faster than numpy for one value)."""
    if not s > 0:
        raise ValueError(f"phi: std must be > 0 (got {s!r})")
    y = (t - m) / s
    try:
        e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    except OverflowError:
        return 0.0  # far before the mean: 1 - 1/(1 + inf) = 1
    if t > m:
        return -math.log10(e / (1.0 + e)) + 0.0
    return -math.log10(1.0 - 1.0 / (1.0 + e)) + 0.0
