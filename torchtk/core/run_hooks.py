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
    it (an unconfigured hook costs nothing); every other hook is called here as a plain
    list of functions, wrappers included (:func:`_call_wrapped` keeps pluggy's wrapper
    semantics): on the per-step path pluggy's generic caller costs 3-11 us per call
    (``benchmarks/per_step.py``). Only ``TORCHTK_TRACE_PLUGINS`` sends hooks through pluggy.
    Hooks are called with their hookspec's arguments in order:
    ``hooks.on_save_checkpoint(state, checkpoint)``.
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
            if not impls:
                hook = None
            elif tracing:
                hook = functools.partial(_call_by_keyword, caller, spec_args)
            else:
                hook = _caller(impls, spec_args)
            setattr(self, name, hook)


def _picks(argnames: tuple[str, ...], spec_args: tuple[str, ...]) -> tuple[int, ...] | None:
    """Which of the hook's arguments an implementation takes; ``None``: all, in order."""
    if tuple(argnames) == spec_args:
        return None
    return tuple(spec_args.index(name) for name in argnames)


def _caller(impls: list[Any], spec_args: tuple[str, ...]) -> Hook:
    """The call of one hook's implementations in pluggy's order (its list, reversed:
    wrappers, outermost first, then the plain ones, ``tryfirst`` first)."""
    plain, wrappers = [], []
    for impl in reversed(impls):
        entry = (impl.function, _picks(impl.argnames, spec_args))
        if impl.hookwrapper or impl.wrapper:
            wrappers.append((*entry, impl.hookwrapper, impl))
        else:
            plain.append(entry)
    inner = _call_in_order(plain)
    return inner if not wrappers else functools.partial(_call_wrapped, tuple(wrappers), inner)


def _call_by_keyword(caller: Any, spec_args: tuple[str, ...], *args: Any) -> None:
    caller(**dict(zip(spec_args, args)))


def _arguments(args: tuple[Any, ...], picks: tuple[int, ...] | None) -> tuple[Any, ...]:
    return args if picks is None else tuple(args[i] for i in picks)


def _call_in_order(functions: list[tuple[Any, tuple[int, ...] | None]]) -> Callable[..., list[Any]]:
    """The plain implementations, in order; returns their results that are not ``None``
    (a run hook's result, as pluggy gives it); an exception stops the rest."""
    def call(*args: Any) -> list[Any]:
        results = []
        for function, picks in functions:
            result = function(*args) if picks is None else function(*(args[i] for i in picks))
            if result is not None:
                results.append(result)
        return results

    return call


def _call_wrapped(wrappers: tuple[Any, ...], inner: Callable[..., list[Any]], *args: Any) -> list[Any]:
    """Pluggy's wrapper semantics without its generic caller. Each wrapper runs to its
    ``yield`` (outermost first); then the plain implementations; then the wrappers
    resume innermost first. A new-style wrapper (``wrapper=True``) gets the result sent
    into its ``yield`` (or the exception raised there) and its return value (or what it
    raises) becomes the outcome; an old-style one (``hookwrapper=True``) gets a
    :class:`pluggy.Result` it may ``force_result``/``force_exception`` on, and what it
    raises after its ``yield`` replaces the outcome with a ``PluggyTeardownRaisedWarning``.
    A wrapper that does not yield, or yields twice, is a ``RuntimeError``."""
    entered: list[tuple[Any, bool, Any]] = []
    result: Any = None
    error: BaseException | None = None
    try:
        for function, picks, old_style, impl in wrappers:
            generator = function(*_arguments(args, picks))
            try:
                next(generator)
            except StopIteration:
                raise RuntimeError(f"wrap_controller at {impl.plugin_name!r} {function.__name__} did not yield")
            entered.append((generator, old_style, impl))
        result = inner(*args)
    except BaseException as exc:
        error = exc
    for generator, old_style, impl in reversed(entered):
        result, error = (_resume_old if old_style else _resume_new)(generator, impl, result, error)
    if error is not None:
        raise error
    return result


def _second_yield(impl: Any) -> RuntimeError:
    return RuntimeError(f"wrap_controller at {impl.plugin_name!r} {impl.function.__name__} has second yield")


def _resume_new(generator: Any, impl: Any, result: Any, error: BaseException | None) -> tuple[Any, Any]:
    """A ``wrapper=True`` generator after its ``yield``: ``(result, error)`` it leaves."""
    try:
        if error is not None:
            generator.throw(error)
        else:
            generator.send(result)
    except StopIteration as stop:
        return stop.value, None
    except BaseException as exc:
        return None, exc
    generator.close()
    return None, _second_yield(impl)


def _resume_old(generator: Any, impl: Any, result: Any, error: BaseException | None) -> tuple[Any, Any]:
    """A ``hookwrapper=True`` generator after its ``yield``: ``(result, error)`` it leaves."""
    import warnings

    outcome = pluggy.Result(result, error)
    try:
        generator.send(outcome)
    except StopIteration:
        return (None, outcome.exception) if outcome.exception is not None else (outcome.get_result(), None)
    except BaseException as exc:
        warnings.warn(pluggy.PluggyTeardownRaisedWarning(
            f"a hookwrapper ({impl.plugin_name!r} {impl.function.__name__}) raised after its yield; use "
            f"wrapper=True or force_exception() instead"), stacklevel=3)
        return None, exc
    generator.close()
    return None, _second_yield(impl)
