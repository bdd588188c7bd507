"""Whether the per-node driver runs its compiled hot path (:mod:`raysim.engine._hotpath`).

``pip install`` builds the extension from ``raysim/engine/_hotpath.pyx`` where Cython and a
C compiler are available (``setup.py``; the build is optional, so an install without a
compiler still works). The pure-Python driver and context are the reference and give the
same event log; ``RAYSIM_PURE_PYTHON=1`` in the environment selects them even when the
extension is built (read each time a driver or a pending pool is made, so a test can
switch it). The same extension holds the pending pools' compiled take loop
(:mod:`raysim.engine.pending`).
"""

from __future__ import annotations

import os
from types import ModuleType

_built: ModuleType | None
try:
    from raysim.engine import _hotpath as _built
except ImportError:  # not built: no compiler at install time, or a plain source tree
    _built = None

ENV = "RAYSIM_PURE_PYTHON"


def available() -> bool:
    """Whether the compiled extension was built and imports."""
    return _built is not None


def hotpath() -> ModuleType | None:
    """The compiled module if it is built and not switched off by ``RAYSIM_PURE_PYTHON=1``."""
    if _built is None or os.environ.get(ENV, "") == "1":
        return None
    return _built


__all__ = ["ENV", "available", "hotpath"]
