"""Mean and a 95 % band over seeds, without scipy.

``band="ci"`` (default) is the two-sided 95 % confidence interval of the mean, using
Student's t with n − 1 degrees of freedom (exact table to 30, Cornish–Fisher expansion
above); ``band="quantile"`` is the 2.5 %–97.5 % range of the runs themselves. A single run
gives a band of zero width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

Band = Literal["ci", "quantile"]

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def band_of(values: np.ndarray, band: Band = "ci", axis: int = 0) -> tuple[np.ndarray, ...]:
    """Mean, low and high of ``values`` along ``axis`` (NaNs ignored), and the count."""
    values = np.asarray(values, dtype=float)
    n = np.sum(~np.isnan(values), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=axis)
            if band == "quantile":
                lo = np.nanquantile(values, 0.025, axis=axis)
                hi = np.nanquantile(values, 0.975, axis=axis)
            else:
                sd = np.nanstd(values, axis=axis, ddof=1)
                t = np.vectorize(t975, otypes=[float])(np.maximum(n - 1, 0))
                half = np.where(n > 1, t * sd / np.sqrt(np.maximum(n, 1)), 0.0)
                lo, hi = mean - half, mean + half
    return mean, lo, hi, n


def summarize(
    frame: pd.DataFrame, by: Sequence[str], values: Sequence[str], band: Band = "ci"
) -> pd.DataFrame:
    """Per group of ``by``: mean, lo, hi and n of each column in ``values`` (long format).

    Columns: ``*by, metric, mean, lo, hi, n``.
    """
    rows = []
    groups = frame.groupby(list(by), sort=True, dropna=False) if by else [((), frame)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for col in values:
            mean, lo, hi, n = band_of(g[col].to_numpy(dtype=float), band)
            rows.append({**dict(zip(by, key, strict=True)), "metric": col, "mean": float(mean),
                         "lo": float(lo), "hi": float(hi), "n": int(n)})
    return pd.DataFrame(rows, columns=[*by, "metric", "mean", "lo", "hi", "n"])
