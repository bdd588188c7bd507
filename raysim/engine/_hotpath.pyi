"""Type stubs of the compiled hot path (raysim/engine/_hotpath.pyx)."""

from typing import Any

class FastContext:
    n_nodes: int
    seed: int
    node: int
    now: int
    cause: int
    _li: int
    _evseq: int
    _window_end: int
    _sends: list[tuple[Any, ...]]
    _new_timers: list[tuple[Any, ...]]
    _late: list[tuple[Any, ...]]
    _obs: list[tuple[Any, ...]]
    def __init__(
        self,
        n_nodes: int,
        topology: Any,
        send_seq: list[int],
        timer_seq: list[int],
        event_seq: list[int],
        epochs: list[int],
        rngs: list[Any],
        cancelled: set[tuple[int, int]],
        storage: list[dict[str, Any]],
        seed: int = ...,
    ) -> None: ...
    def send(self, dst: int, msg: object) -> int: ...
    def set_timer(self, delay: int, tag: Any = ...) -> int: ...
    def cancel_timer(self, timer_id: int) -> None: ...
    def emit(self, name: str, value: Any = ..., peer: int = ..., ref: int = ...) -> None: ...
    @property
    def rng(self) -> Any: ...
    @property
    def peers(self) -> Any: ...
    def random_peer(self) -> int: ...
    @property
    def storage(self) -> dict[str, Any]: ...

def run_events(driver: Any, ctx: FastContext, *lists: Any) -> None: ...
