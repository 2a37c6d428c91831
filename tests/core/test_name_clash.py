"""The name-clash rule (issue 11 item 6): a third-party plugin that claims a built-in
name never breaks the specs that use the built-in. The plain name keeps the built-in
unless the plugin declared ``replaces=True``; ``plugin::name`` picks a provider; the clash
is reported by ``tk plugins`` and shown by ``tk list``."""

from __future__ import annotations

import types

import pytest

from torchtk import Component, Params, hookimpl
from torchtk.core.errors import AmbiguousComponentError, UnknownComponentError
from torchtk.core.report import clash_lines, component_rows, plugin_report
from torchtk.testing import registry_with


def model_plugin(name: str, model_name: str = "resnet50", *, replaces: bool = False):
    """A plugin providing one model that builds a marker object, like torchtk-timm's ``resnet50``."""
    module = types.ModuleType(name)

    class P(Params):
        """Nothing."""

    @hookimpl
    def register_components(register):
        register(Component("model", model_name, f"{name}'s {model_name}.", params=P, replaces=replaces))

    @hookimpl
    def make_model(name, params):
        return f"{module.__name__} model"

    module.register_components, module.make_model = register_components, make_model
    return module


def test_the_builtin_wins_by_its_plain_name():
    registry = registry_with(model_plugin("timm"))
    assert registry.resolve("model", "resnet50").plugin == "torchtk.plugins.vision_models"
    assert registry.conflicts() == []  # a spec using resnet50 still validates


def test_plugin_scope_picks_the_plugin_and_the_builtin():
    registry = registry_with(model_plugin("timm"))
    assert registry.create("model", "timm::resnet50") == "timm model"
    assert registry.resolve("model", "vision_models::resnet50").plugin == "torchtk.plugins.vision_models"
    with pytest.raises(UnknownComponentError, match=r"no plugin 'tim'.*timm::resnet50"):
        registry.resolve("model", "tim::resnet50")


def test_replaces_true_swaps_the_plain_name():
    registry = registry_with(model_plugin("timm", replaces=True))
    assert registry.create("model", "resnet50") == "timm model"
    assert registry.resolve("model", "vision_models::resnet50").plugin == "torchtk.plugins.vision_models"
    [(kind, name, winner, losers)] = [c for c in registry.clashes() if c[1] == "resnet50"]
    assert (winner.plugin, [c.plugin for c in losers]) == ("timm", ["torchtk.plugins.vision_models"])


def test_two_third_party_plugins_on_one_builtin_name_keep_the_builtin():
    registry = registry_with(model_plugin("timm"), model_plugin("other"))
    assert registry.resolve("model", "resnet50").plugin == "torchtk.plugins.vision_models"
    both_replace = registry_with(model_plugin("timm", replaces=True), model_plugin("other", replaces=True))
    with pytest.raises(AmbiguousComponentError, match=r'"(timm|other)::resnet50" or "(timm|other)::resnet50"'):
        both_replace.resolve("model", "resnet50")


def test_two_third_party_plugins_without_a_builtin_are_a_conflict_naming_the_choices():
    registry = registry_with(model_plugin("timm", "convnext_nano"), model_plugin("other", "convnext_nano"))
    assert [(k, n) for k, n, _ in registry.conflicts()] == [("model", "convnext_nano")]
    with pytest.raises(AmbiguousComponentError, match=r"Choose one explicitly: ") as raised:
        registry.resolve("model", "convnext_nano")
    assert '"timm::convnext_nano"' in str(raised.value) and '"other::convnext_nano"' in str(raised.value)


def test_the_clash_is_reported_and_listed():
    registry = registry_with(model_plugin("timm"), model_plugin("timm_only", "convnext_nano"))
    report = plugin_report(registry)
    clash = next(c for c in report["clashes"] if c["name"] == "resnet50")
    assert clash["pick"] == ["timm::resnet50"] and clash["winner"].startswith("torchtk.plugins.vision_models")
    [line] = [line for line in clash_lines(report["clashes"]) if line.startswith("clash: timm ")]
    assert "the model name resnet50 of torchtk.plugins.vision_models" in line and "timm::NAME picks timm" in line and "replaces=True" in line
    rows = {r["name"]: r for r in component_rows(registry, "model")}
    assert rows["resnet50"]["provider"] == "vision_models" and rows["resnet50"]["also"] == ["timm::resnet50"]
    assert rows["convnext_nano"]["provider"] == "timm_only" and rows["convnext_nano"]["also"] == []
