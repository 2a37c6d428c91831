"""The run hooks of a spec's callbacks (``on_step`` and friends), called cheaply."""

from __future__ import annotations

import functools
from typing import Any

import pluggy

from torchtk.core import hookspecs
from torchtk.core.plugins import trace_hooks, tracing_enabled
from torchtk.core.state import TrainState


class RunHooks:
    """The run hooks of the spec's callbacks, and only those, in the spec's order.

    The callbacks are registered with pluggy, which validates them and honours
    ``tryfirst``/``trylast``; pluggy calls the last registered first, so they are
    registered in reverse. Each hook attribute is ``None`` when no callback implements
    it (an unconfigured hook costs nothing), and a hook without wrappers is called as a
    plain list of functions: on the per-step path pluggy's generic caller costs about
    10 us more per call (``benchmarks/engine_overhead.py``).
    """

    NAMES = ("on_fit_start", "on_step", "on_step_end", "on_epoch_end", "on_fit_end")

    def __init__(self, callbacks: list[Any]) -> None:
        manager = pluggy.PluginManager("torchtk")
        manager.add_hookspecs(hookspecs)
        tracing = tracing_enabled()
        if tracing:
            trace_hooks(manager)
        for callback in reversed(callbacks):
            manager.register(callback)
        for name in self.NAMES:
            caller = getattr(manager.hook, name)
            impls = caller.get_hookimpls()
            wrapped = any(getattr(i, "hookwrapper", False) or getattr(i, "wrapper", False) for i in impls)
            if not impls:
                hook = None
            elif tracing or wrapped:
                hook = functools.partial(_call_by_keyword, caller)
            else:
                hook = _call_in_order([(i.function, bool(i.argnames)) for i in reversed(impls)])
            setattr(self, name, hook)


def _call_by_keyword(caller: Any, state: TrainState) -> None:
    caller(state=state)


def _call_in_order(functions: list[tuple[Any, bool]]) -> Any:
    def call(state: TrainState) -> None:
        for function, takes_state in functions:
            function(state) if takes_state else function()

    return call
