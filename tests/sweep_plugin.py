"""A protocol that fails on purpose, for sweep failure tests.

Sweep tasks import this module (``[experiment] modules = ["tests.sweep_plugin"]``) so the
protocol is registered in the Ray workers too; they get its package through the tasks'
``runtime_env`` (``py_modules``), as a worker on another machine would.
"""

from __future__ import annotations

from typing import Any, ClassVar

from raysim.api.protocol import Context, Params, Protocol, register


class FlakyParams(Params):
    """``fail``: raise in node 1's first timer."""

    fail: bool = False
    period: int = 1000


@register("test.flaky")
class Flaky(Protocol):
    """Every node emits ``value`` each round; with ``fail`` node 1 raises instead."""

    Params: ClassVar[type[FlakyParams]] = FlakyParams

    def on_start(self, ctx: Context) -> None:
        ctx.set_timer(self.params.period, "round")

    def on_timer(self, ctx: Context, tag: Any) -> None:
        if self.params.fail and self.node == 1:
            raise RuntimeError("flaky protocol failed on purpose")
        ctx.emit("value", 1.0)
        ctx.set_timer(self.params.period, "round")
