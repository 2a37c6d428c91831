"""Provider calls go through pluggy, to the one plugin whose catalog declared the name."""

from __future__ import annotations

import types

import pytest

from torchtk import Component, Params, hookimpl
from torchtk.core.errors import TorchtkError
from torchtk.testing import registry_with


class P(Params):
    """Nothing."""


def loss_plugin(name: str, loss_name: str, **hooks):
    """A plugin declaring loss ``loss_name``; ``hooks`` are its other attributes."""
    module = types.ModuleType(name)

    @hookimpl
    def register_components(register):
        register(Component("loss", loss_name, "A test loss.", params=P))

    module.register_components = register_components
    for attr, value in hooks.items():
        setattr(module, attr, value)
    return module


def test_the_providers_own_wrapper_applies():
    calls = []

    @hookimpl
    def make_loss(name, params):
        return "built"

    @hookimpl(wrapper=True, specname="make_loss")
    def wrap_make_loss(name):
        calls.append(name)
        built = yield
        return f"wrapped {built}"

    registry = registry_with(loss_plugin("own", "mine", make_loss=make_loss, wrap_make_loss=wrap_make_loss))
    assert registry.create("loss", "mine") == "wrapped built"
    assert calls == ["mine"]


def test_another_plugins_wrapper_and_impl_do_not_apply():
    calls = []

    @hookimpl
    def make_loss(name, params):
        return "mine"

    @hookimpl(wrapper=True, tryfirst=True)
    def intruding_wrapper(name):
        calls.append(name)
        yield
        return "hijacked"

    @hookimpl(tryfirst=True, specname="make_loss")
    def intruding_impl(name):
        calls.append(name)
        return "hijacked"

    intruder = types.ModuleType("intruder")
    intruder.make_loss = intruding_wrapper
    intruder.make_loss_too = intruding_impl
    for order in ((loss_plugin("own", "mine", make_loss=make_loss), intruder),
                  (intruder, loss_plugin("own", "mine", make_loss=make_loss))):
        registry = registry_with(*order)
        assert registry.create("loss", "mine") == "mine"
        assert registry.create("loss", "focal") is not None  # a built-in is not wrapped either
    assert calls == []


def test_a_provider_returning_none_is_a_clear_error():
    @hookimpl
    def make_loss(name, params):
        return None

    registry = registry_with(loss_plugin("lazy", "nothing", make_loss=make_loss))
    with pytest.raises(TorchtkError, match=r"plugin 'lazy' declares loss 'nothing' but its make_loss hook returned None"):
        registry.create("loss", "nothing")


def test_a_plugin_declaring_a_component_without_its_hook_is_a_clear_error():
    registry = registry_with(loss_plugin("hookless", "ghost"))
    with pytest.raises(TorchtkError, match=r"plugin 'hookless' declares a component but does not implement "
                                           r"the 'make_loss' hook"):
        registry.create("loss", "ghost")


def test_a_plugin_with_only_a_wrapper_does_not_implement_the_hook():
    @hookimpl(wrapper=True)
    def make_loss():
        return (yield)

    registry = registry_with(loss_plugin("wrapper_only", "ghost", make_loss=make_loss))
    with pytest.raises(TorchtkError, match="does not implement the 'make_loss' hook"):
        registry.create("loss", "ghost")


def test_an_impl_may_take_any_subset_of_the_arguments():
    seen = {}

    @hookimpl
    def make_loss(model):
        seen["model"] = model
        return "built"

    registry = registry_with(loss_plugin("subset", "few", make_loss=make_loss))
    assert registry.create("loss", "few") == "built"
    assert seen == {"model": None}  # context not given outside a run is None
    marker = object()
    assert registry.create("loss", "few", model=marker) == "built"
    assert seen["model"] is marker


def test_every_hookspec_argument_is_passed_by_keyword():
    seen = {}

    @hookimpl
    def make_loss(params, name, model):  # any order: pluggy passes by name
        seen.update(name=name, params=params, model=model)
        return "built"

    registry = registry_with(loss_plugin("keywords", "kw", make_loss=make_loss))
    registry.create("loss", "kw")
    assert seen["name"] == "kw" and isinstance(seen["params"], P) and seen["model"] is None


def test_an_argument_the_hookspec_does_not_have_is_refused():
    registry = registry_with()
    component = registry.resolve("loss", "focal")
    with pytest.raises(TypeError, match=r"make_loss\(\) got unexpected argument\(s\) 'modle'"):
        registry.build(component, registry.validate_params(component, {}), modle=None)


def test_tracing_prints_one_line_per_provider_call(monkeypatch, capsys):
    monkeypatch.setenv("TORCHTK_TRACE_PLUGINS", "1")

    @hookimpl
    def make_loss(name, params):
        return "built"

    @hookimpl(wrapper=True, specname="make_loss")
    def wrap_make_loss():
        return (yield)

    registry = registry_with(loss_plugin("traced", "t", make_loss=make_loss, wrap_make_loss=wrap_make_loss))
    capsys.readouterr()
    registry.create("loss", "t")
    lines = [line for line in capsys.readouterr().err.splitlines() if "make_loss" in line]
    assert lines == ["torchtk trace: make_loss(name='t') -> traced"]
