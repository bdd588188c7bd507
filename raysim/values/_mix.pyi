"""Type stubs of the compiled counter-based uniforms (raysim/values/_mix.pyx)."""

import numpy as np

def uniform(key: int, ids: tuple[np.ndarray, ...]) -> np.ndarray: ...
