"""raysim.phi against Akka's published test vectors (AccrualFailureDetectorSpec.scala)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import raysim


def cdf(p: float) -> float:
    return 1.0 - 10.0 ** (-p)


@pytest.mark.parametrize(
    ("elapsed", "mean", "std", "expected", "tol"),
    [
        (0, 0, 10, 0.5, 0.001),
        (6, 0, 10, 0.7257, 0.001),
        (15, 0, 10, 0.9332, 0.001),
        (20, 0, 10, 0.97725, 0.001),
        (25, 0, 10, 0.99379, 0.001),
        (35, 0, 10, 0.99977, 0.001),
        (40, 0, 10, 0.99997, 0.0001),
        (22, 20.0, 3, 0.7475, 0.001),
    ],
)
def test_good_enough_cumulative_distribution(elapsed, mean, std, expected, tol) -> None:
    assert cdf(raysim.phi(elapsed, mean, std)) == pytest.approx(expected, abs=tol)


def test_realistic_phi_values() -> None:
    table = {0: 0.0, 500: 0.1, 1000: 0.3, 1200: 1.6, 1400: 4.7, 1600: 10.8, 1700: 15.3}
    for elapsed, expected in table.items():
        assert raysim.phi(elapsed, 1000.0, 100.0) == pytest.approx(expected, abs=0.1)
    assert raysim.phi(1100, 1000.0, 500.0) < raysim.phi(1100, 1000.0, 100.0)


def test_outliers_keep_precision() -> None:
    assert raysim.phi(10, 0, 1) == pytest.approx(38.0, abs=1.0)
    assert raysim.phi(-25, 0, 1) == 0.0


def test_monotone_and_vectorised() -> None:
    xs = np.arange(0, 41, dtype=float)
    ph = raysim.phi(xs, 0.0, 10.0)
    assert isinstance(ph, np.ndarray) and (np.diff(ph) > 0).all()
    assert ph[15] == raysim.phi(15.0, 0.0, 10.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        raysim.phi(1.0, 0.0, 0.0)


def test_importing_phi_loads_no_heavy_module() -> None:
    code = ("import sys, raysim; raysim.phi(1.0, 0.0, 1.0); "
            "print(any(m in sys.modules for m in ('ray', 'pandas', 'pyarrow', 'raysim.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scalar_and_array_paths_agree() -> None:
    xs = np.linspace(-30, 60, 181)
    arr = raysim.phi(xs, 5.0, 7.0)
    one = [raysim.phi(float(x), 5.0, 7.0) for x in xs]
    assert np.allclose(arr, one, rtol=1e-12, atol=1e-12)
    assert raysim.phi(-1e6, 0.0, 1.0) == 0.0
