"""Compatibility name: the value type module lives in :mod:`raysim.values.history`.

``import raysim.history`` keeps working for scripts written before the layers moved; it is the
same module object, so every class is identical.
"""

import sys

from raysim.values import history as _module

sys.modules[__name__] = _module
