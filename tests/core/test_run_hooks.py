"""RunHooks calls wrappers itself (not through pluggy's generic caller): the same order,
results and exceptions as pluggy, checked against pluggy on the same callbacks."""

from __future__ import annotations

import warnings

import pluggy
import pytest

from torchtk import hookimpl
from torchtk.core import hookspecs
from torchtk.core.run_hooks import RunHooks


def through_pluggy(callbacks, name, *args):
    """What pluggy itself does with ``callbacks`` registered as RunHooks registers them."""
    manager = pluggy.PluginManager("torchtk")
    manager.add_hookspecs(hookspecs)
    for callback in reversed(callbacks):
        manager.register(callback)
    caller = getattr(manager.hook, name)
    names = ("state", "exception") if name == "on_exception" else ("state",)
    return caller(**dict(zip(names, args)))


def outcome(call):
    """``("ok", result)`` or ``("raised", type, message)``, with any warnings' categories."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = ("ok", call())
        except BaseException as exc:  # noqa: BLE001 - comparing what both raise
            value = ("raised", type(exc), str(exc))
    return value, sorted({w.category.__name__ for w in caught})


def make_callbacks(log, fail_plain=False, new_action="pass", old_action="pass"):
    """Two plain callbacks (one tryfirst, one returning a value), a new-style and an
    old-style wrapper (each may swallow, replace or re-raise), and a trylast wrapper."""

    class Plain:
        @hookimpl
        def on_step(self, state):
            log.append(("plain", state))
            if fail_plain:
                raise ValueError("plain failed")
            return "plain-result"

    class First:
        @hookimpl(tryfirst=True)
        def on_step(self):
            log.append(("first",))

    class New:
        @hookimpl(wrapper=True)
        def on_step(self, state):
            log.append(("new before", state))
            try:
                result = yield
            except ValueError as exc:
                log.append(("new saw", str(exc)))
                if new_action == "swallow":
                    return ["swallowed"]
                raise
            log.append(("new after", result))
            if new_action == "replace":
                return result + ["new"]
            if new_action == "raise":
                raise KeyError("new raised")
            return result

    class Old:
        @hookimpl(hookwrapper=True, tryfirst=True)
        def on_step(self, state):
            log.append(("old before",))
            result = yield
            log.append(("old saw", repr(result.exception)))
            if old_action == "force":
                result.force_result(["forced"])
            elif old_action == "force_exception":
                result.force_exception(TypeError("forced error"))
            elif old_action == "raise":
                raise KeyError("old raised")

    class Last:
        @hookimpl(wrapper=True, trylast=True)
        def on_step(self):
            log.append(("last before",))
            result = yield
            log.append(("last after",))
            return result

    return [Plain(), First(), New(), Old(), Last()]


CASES = [dict(), dict(fail_plain=True), dict(fail_plain=True, new_action="swallow"), dict(new_action="replace"),
         dict(new_action="raise"), dict(old_action="force"), dict(old_action="force_exception"),
         dict(old_action="raise"), dict(fail_plain=True, old_action="force")]


@pytest.mark.parametrize("case", CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "plain" for c in CASES])
def test_wrappers_are_called_as_pluggy_calls_them(case):
    ours, theirs = [], []
    mine = outcome(lambda: RunHooks(make_callbacks(ours, **case)).on_step("s"))
    reference = outcome(lambda: through_pluggy(make_callbacks(theirs, **case), "on_step", "s"))
    assert ours == theirs and ours  # the same calls, in the same order
    assert mine == reference


def test_wrapped_hooks_do_not_go_through_pluggy():
    log, used = [], []
    hooks = RunHooks(make_callbacks(log))
    original = pluggy.HookCaller.__call__

    def generic_caller(self, *args, **kwargs):
        used.append(self.name)
        return original(self, *args, **kwargs)

    pluggy.HookCaller.__call__ = generic_caller  # only around the call: pytest itself calls pluggy hooks
    try:
        hooks.on_step("s")
    finally:
        pluggy.HookCaller.__call__ = original
    assert used == []
    assert log[0] == ("old before",) and ("plain", "s") in log


def test_a_wrapper_that_does_not_yield_or_yields_twice_is_an_error():
    class NoYield:
        @hookimpl(wrapper=True)
        def on_fit_end(self, state):
            if False:
                yield

    class Twice:
        @hookimpl(wrapper=True)
        def on_fit_end(self, state):
            yield
            yield

    for callback, words in ((NoYield(), "did not yield"), (Twice(), "has second yield")):
        with pytest.raises(RuntimeError, match=words):
            RunHooks([callback]).on_fit_end("s")
        with pytest.raises(RuntimeError, match=words):
            through_pluggy([callback], "on_fit_end", "s")


def test_a_wrapper_around_no_plain_implementation_and_a_subset_of_arguments():
    seen = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def on_exception(self, exception):
            seen.append(exception)
            return (yield)

    error = ValueError("x")
    assert RunHooks([Wrapper()]).on_exception("state", error) == [] == through_pluggy([Wrapper()], "on_exception",
                                                                                        "state", error)
    assert seen == [error, error]
