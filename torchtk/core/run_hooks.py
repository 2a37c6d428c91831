"""The run hooks of a spec's callbacks (``on_step`` and friends), called cheaply."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import pluggy

from torchtk.core import hookspecs
from torchtk.core.plugins import trace_hooks, tracing_enabled

Hook = Callable[..., None]


class RunHooks:
    """The run hooks of the spec's callbacks, and only those, in the spec's order.

    The callbacks are registered with pluggy, which validates them and honours
    ``tryfirst``/``trylast``; pluggy calls the last registered first, so they are
    registered in reverse. Each hook attribute is ``None`` when no callback implements
    it (an unconfigured hook costs nothing), and a hook without wrappers is called as a
    plain list of functions: on the per-step path pluggy's generic caller costs about
    10 us more per call (``benchmarks/engine_overhead.py``). Hooks are called with
    their hookspec's arguments in order: ``hooks.on_save_checkpoint(state, checkpoint)``.
    """

    NAMES = ("on_fit_start", "on_epoch_start", "on_step", "on_step_end", "on_validation_start",
             "on_validation_end", "on_epoch_end", "on_save_checkpoint", "on_load_checkpoint", "on_exception",
             "on_fit_end")

    on_fit_start: Hook | None
    on_epoch_start: Hook | None
    on_step: Hook | None
    on_step_end: Hook | None
    on_validation_start: Hook | None
    on_validation_end: Hook | None
    on_epoch_end: Hook | None
    on_save_checkpoint: Hook | None
    on_load_checkpoint: Hook | None
    on_exception: Hook | None
    on_fit_end: Hook | None

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
            spec_args = tuple(inspect.signature(getattr(hookspecs, name)).parameters)
            wrapped = any(getattr(i, "hookwrapper", False) or getattr(i, "wrapper", False) for i in impls)
            if not impls:
                hook = None
            elif tracing or wrapped:
                hook = functools.partial(_call_by_keyword, caller, spec_args)
            else:
                hook = _call_in_order([(i.function, _picks(i.argnames, spec_args)) for i in reversed(impls)])
            setattr(self, name, hook)


def _picks(argnames: tuple[str, ...], spec_args: tuple[str, ...]) -> tuple[int, ...] | None:
    """Which of the hook's arguments an implementation takes; ``None``: all, in order."""
    if tuple(argnames) == spec_args:
        return None
    return tuple(spec_args.index(name) for name in argnames)


def _call_by_keyword(caller: Any, spec_args: tuple[str, ...], *args: Any) -> None:
    caller(**dict(zip(spec_args, args)))


def _call_in_order(functions: list[tuple[Any, tuple[int, ...] | None]]) -> Hook:
    def call(*args: Any) -> None:
        for function, picks in functions:
            if picks is None:
                function(*args)
            else:
                function(*(args[i] for i in picks))

    return call
