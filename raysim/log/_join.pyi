from collections.abc import Callable
from typing import Any

import numpy as np

def join_chunks(
    chunks: tuple[Any, ...], lens: list[int], dtype: type, column: Callable[[Any, int], Any]
) -> np.ndarray: ...
