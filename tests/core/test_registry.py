"""The registry: listing, describing, building, provenance, conflicts, broken plugins."""

from __future__ import annotations

import types

import pytest

import torchtk
from torchtk import Component, Params, hookimpl
from torchtk.core.errors import AmbiguousComponentError, BrokenPluginError, UnknownComponentError, UserInputError
from torchtk.core.plugins import PluginHost
from torchtk.core.registry import Registry
from torchtk.testing import check_plugin, registry_with


def make_loss_plugin(name: str, loss_name: str, *, replaces: bool = False, value: float = 1.0):
    """A tiny third-party-style plugin providing one loss that returns a constant."""
    module = types.ModuleType(name)

    class ConstantParams(Params):
        """A constant loss, for tests."""

    @hookimpl
    def register_components(register):
        register(Component("loss", loss_name, "A constant loss.", params=ConstantParams, replaces=replaces))

    @hookimpl
    def make_loss(name, params):
        return lambda output, target: value

    module.register_components = register_components
    module.make_loss = make_loss
    return module


def test_names_lists_builtins_sorted():
    names = torchtk.registry.names("loss")
    assert {"focal", "bce_with_logits", "l2_regularization"} <= set(names)
    assert names == sorted(names)


def test_names_filters_with_wildcards_and_accepts_plural_kind():
    assert torchtk.registry.names("losses", "l*_regularization") == ["l1_regularization", "l2_regularization"]


def test_create_validates_params_and_passes_run_objects():
    import torch

    focal = torchtk.registry.create("loss", "focal", alpha=0.25, gamma=2.0)
    assert torch.isfinite(focal(torch.zeros(4, 1), torch.ones(4, 1)))
    model = torch.nn.Linear(2, 1)
    opt = torchtk.registry.create("optimizer", "sgd", parameters=model.parameters(), lr=0.1)
    sched = torchtk.registry.create("scheduler", "step", optimizer=opt, step_size=30, gamma=0.1)
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)
    penalty = torchtk.registry.create("loss", "l2_regularization", model=model, alpha=1.0)
    assert torch.allclose(penalty(None, None), model.weight.pow(2).sum())


def test_create_rejects_bad_params_with_the_clis_one_line_messages(tk, spec_file, small_spec):
    from torchtk.core.errors import ParamsError, UserInputError

    with pytest.raises(ParamsError) as raised:
        torchtk.registry.create("loss", "focal", gamma=-1.0)
    assert str(raised.value) == "loss 'focal': gamma: Input should be greater than or equal to 0 (got -1.0)"
    assert isinstance(raised.value, UserInputError) and isinstance(raised.value, ValueError)
    assert raised.value.exit_code == 2 and raised.value.problems == [
        ("gamma", "Input should be greater than or equal to 0 (got -1.0)")]
    # the CLI words the same problem the same way, with the spec path in front
    small_spec["loss"] = [{"name": "focal", "params": {"gamma": -1.0}}]
    cli_message = tk("validate", spec_file(small_spec)).stderr
    assert "loss[0].params.gamma: Input should be greater than or equal to 0 (got -1.0)" in cli_message
    with pytest.raises(ParamsError, match=r"^loss 'focal': gama: unknown key 'gama'; valid keys: .*gamma"):
        torchtk.registry.create("loss", "focal", gama=2.0)
    with pytest.raises(ParamsError) as raised:
        torchtk.registry.create("loss", "focal", gamma="2", reduction="avg")
    assert str(raised.value).splitlines()[0] == "loss 'focal': invalid params"
    assert sorted(path for path, _ in raised.value.problems) == ["gamma", "reduction"]
    assert "pydantic" not in str(raised.value) and "errors.pydantic.dev" not in str(raised.value)


def test_create_suggests_the_name_meant_as_the_cli_does(tk, spec_file, small_spec):
    from torchtk.core.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError) as raised:
        torchtk.registry.create("loss", "focl")
    assert "Did you mean 'focal'?" in str(raised.value)
    small_spec["loss"] = "focl"
    assert "Did you mean 'focal'?" in tk("validate", spec_file(small_spec)).stderr


def test_aliases_resolve_to_the_canonical_component():
    assert torchtk.registry.resolve("loss", "l2_penalty").name == "l2_regularization"
    assert "l2_penalty" in torchtk.registry.describe("loss", "l2_regularization")["aliases"]


def test_describe_gives_types_defaults_bounds_descriptions_and_provenance():
    info = torchtk.registry.describe("loss", "focal")
    gamma = next(p for p in info["params"] if p["name"] == "gamma")
    assert gamma == {"name": "gamma", "type": "number", "required": False, "default": 2.0,
                     "bounds": {"minimum": 0.0}, "description": gamma["description"]}
    assert gamma["description"]
    assert info["plugin"] == "torchtk.plugins.losses.classification"
    assert info["distribution"] == "torchtk"


def test_unknown_name_suggests_close_names_and_the_list_command():
    with pytest.raises(UnknownComponentError, match=r"Did you mean 'focal'\?.*tk list losses"):
        torchtk.registry.resolve("loss", "facal")


def test_unknown_kind_is_user_error():
    with pytest.raises(UserInputError, match="Valid kinds"):
        torchtk.registry.names("lossez")


def test_third_party_plugin_is_listed_with_provenance():
    registry = registry_with(make_loss_plugin("torchtk_const", "constant"))
    component = registry.resolve("loss", "constant")
    assert component.plugin == "torchtk_const"
    assert registry.create("loss", "constant")(None, None) == 1.0


def test_two_providers_of_one_name_are_a_conflict_naming_both():
    registry = registry_with(make_loss_plugin("plugin_a", "shared"), make_loss_plugin("plugin_b", "shared", value=2.0))
    assert [(k, n) for k, n, _ in registry.conflicts()] == [("loss", "shared")]
    with pytest.raises(AmbiguousComponentError, match="plugin_a.*plugin_b"):
        registry.resolve("loss", "shared")
    # an explicit choice resolves it
    assert registry.create("loss", "plugin_b::shared")(None, None) == 2.0


def test_shadowing_a_builtin_keeps_the_builtin_unless_declared():
    # issue 11 item 6: a plugin that claims a built-in name no longer breaks the specs using the built-in
    silent = registry_with(make_loss_plugin("shadow", "focal"))
    assert silent.resolve("loss", "focal").plugin == "torchtk.plugins.losses.classification"
    assert silent.create("loss", "shadow::focal")(None, None) == 1.0
    assert silent.conflicts() == []
    assert [(k, n, w.plugin, [c.plugin for c in losers]) for k, n, w, losers in silent.clashes()] == [
        ("loss", "focal", "torchtk.plugins.losses.classification", ["shadow"])]
    explicit = registry_with(make_loss_plugin("replacement", "focal", replaces=True, value=3.0))
    assert explicit.conflicts() == []
    assert explicit.create("loss", "focal")(None, None) == 3.0


def test_registration_order_never_decides_the_provider():
    a, b = make_loss_plugin("first", "dup"), make_loss_plugin("second", "dup")
    for registry in (registry_with(a, b), registry_with(b, a)):
        with pytest.raises(AmbiguousComponentError):
            registry.resolve("loss", "dup")


def test_plugin_with_misspelled_hook_is_broken_not_fatal():
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def make_los(name, params):  # typo
        return None

    module.make_los = make_los
    with pytest.warns(UserWarning, match="did you mean 'make_loss'"):
        registry = registry_with(module)
    assert registry.host.plugins["typo_plugin"].broken
    assert "focal" in registry.names("loss")


def test_plugin_whose_catalog_raises_is_broken_not_fatal():
    module = types.ModuleType("raising_catalog")

    @hookimpl
    def register_components(register):
        raise RuntimeError("cannot find my weights")

    module.register_components = register_components
    registry = registry_with(module)
    with pytest.warns(UserWarning, match="cannot find my weights"):
        names = registry.names("loss")
    assert "focal" in names
    assert registry.host.plugins["raising_catalog"].reason == "RuntimeError: cannot find my weights"


GOOD_PLUGIN = """
    from torchtk import Component, Params, hookimpl

    class P(Params):
        '''Constant.'''

    @hookimpl
    def register_components(register):
        register(Component("loss", "fake_loss", "A fake loss.", params=P))

    @hookimpl
    def make_loss(name, params):
        return lambda output, target: 0.0
"""


def test_entry_point_plugin_is_loaded_with_distribution_and_version(installed_plugins):
    installed_plugins("torchtk-fake", {"fake": "torchtk_fake_good"}, {"torchtk_fake_good": GOOD_PLUGIN})
    registry = Registry(PluginHost())
    component = registry.resolve("loss", "fake_loss")
    assert (component.plugin, component.distribution, component.version) == ("fake", "torchtk-fake", "1.2.3")


def test_entry_point_that_fails_to_import_is_reported_and_chained(installed_plugins):
    installed_plugins("torchtk-broken", {"broken": "torchtk_fake_missing_module"})
    with pytest.warns(UserWarning, match="'broken' failed to load"):
        registry = Registry(PluginHost())
    info = registry.host.plugins["broken"]
    assert info.broken and "ModuleNotFoundError" in info.reason
    assert "focal" in registry.names("loss")  # everything else keeps working
    with pytest.raises(BrokenPluginError, match="broken") as raised:
        registry.resolve("loss", "whatever_it_provided")
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_strict_mode_makes_a_broken_plugin_fatal(installed_plugins, monkeypatch):
    installed_plugins("torchtk-broken", {"broken": "torchtk_fake_missing_module"})
    monkeypatch.setenv("TORCHTK_STRICT_PLUGINS", "1")
    with pytest.raises(BrokenPluginError, match="TORCHTK_STRICT_PLUGINS"):
        PluginHost()


def test_disable_and_load_switches_select_third_party_plugins(installed_plugins, monkeypatch):
    installed_plugins("torchtk-fake", {"fake": "torchtk_fake_good"}, {"torchtk_fake_good": GOOD_PLUGIN})
    monkeypatch.setenv("TORCHTK_DISABLE_PLUGINS", "fake")
    assert "fake" not in PluginHost().plugins
    monkeypatch.setenv("TORCHTK_DISABLE_PLUGINS", "")
    monkeypatch.setenv("TORCHTK_LOAD_PLUGINS", "other")
    with pytest.warns(UserWarning, match="TORCHTK_LOAD_PLUGINS names no installed plugin: other"):
        assert "fake" not in PluginHost().plugins
    monkeypatch.setenv("TORCHTK_LOAD_PLUGINS", "fake")
    assert "fake" in PluginHost().plugins


def test_same_distribution_found_twice_registers_once(installed_plugins, tmp_path, monkeypatch):
    installed_plugins("torchtk-fake", {"fake": "torchtk_fake_good"}, {"torchtk_fake_good": GOOD_PLUGIN})
    monkeypatch.syspath_prepend(str(tmp_path))  # the same path twice on sys.path
    registry = Registry(PluginHost())
    assert [n for n in registry.host.plugins if "fake" in n] == ["fake"]
    assert registry.conflicts() == []


def test_builtin_plugins_conform():
    registry = torchtk.registry
    for name, info in registry.host.plugins.items():
        if info.builtin:
            assert check_plugin(registry, name) == [], name


def test_importing_torchtk_registers_nothing():
    import torchtk.core.registry as registry_module

    registry_module.set_registry(None)
    import importlib

    importlib.reload(torchtk)
    assert registry_module._default is None


def make_aliased_plugin(name: str, kind: str, component: str, aliases: tuple[str, ...]):
    module = types.ModuleType(name)

    class P(Params):
        """Nothing."""

    @hookimpl
    def register_components(register):
        register(Component(kind, component, "A test component.", params=P, aliases=aliases))

    @hookimpl
    def make_callback(name, params):
        return object()

    module.register_components, module.make_callback = register_components, make_callback
    return module


def test_a_new_name_that_equals_a_builtin_alias_is_a_clash_not_a_takeover():
    registry = registry_with(make_aliased_plugin("evil", "callback", "gradient_clipping", ()))
    assert ("callback", "gradient_clipping") in [(k, t) for k, t, _, _ in registry.clashes()]
    assert registry.resolve("callback", "gradient_clipping").plugin == "torchtk.plugins.callbacks"
    assert registry.resolve("callback", "grad_clip").plugin == "torchtk.plugins.callbacks"
    assert registry.resolve("callback", "evil::gradient_clipping").plugin == "evil"


def test_two_plugins_claiming_one_alias_is_a_conflict_either_order():
    a = make_aliased_plugin("plugin_a", "callback", "clip_a", ("clip",))
    b = make_aliased_plugin("plugin_b", "callback", "clip_b", ("clip",))
    for registry in (registry_with(a, b), registry_with(b, a)):
        assert ("callback", "clip") in [(k, t) for k, t, _ in registry.conflicts()]
        with pytest.raises(AmbiguousComponentError, match="plugin_a.*plugin_b|plugin_b.*plugin_a"):
            registry.resolve("callback", "clip")
        # a scope picks the provider, by name or by alias
        assert registry.resolve("callback", "plugin_b::clip").name == "clip_b"
        assert registry.resolve("callback", "plugin_a::clip_a").name == "clip_a"


def test_a_lazy_params_model_that_fails_to_load_makes_its_plugin_broken():
    module = types.ModuleType("lazy_broken")

    @hookimpl
    def register_components(register):
        register(Component("loss", "needs_missing_dep", "Needs a missing package.",
                           params="torchtk_missing_dependency_xyz:Params"))

    @hookimpl
    def make_loss(name, params):
        return None

    module.register_components, module.make_loss = register_components, make_loss
    registry = registry_with(module)
    assert "needs_missing_dep" in registry.names("loss")  # listing never loads params
    with pytest.warns(UserWarning, match="lazy_broken"), pytest.raises(BrokenPluginError) as raised:
        registry.describe("loss", "needs_missing_dep")
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)
    assert registry.host.plugins["lazy_broken"].broken


def test_did_you_mean_ranks_the_fewest_typing_edits_first():
    from torchtk.core.registry import closest, typo_distance

    assert typo_distance("adma", "adam") == 1 and typo_distance("adma", "adamax") == 2
    assert closest("adma", ["adamax", "adamw", "adam", "sgd"])[0] == "adam"
    assert closest("focla", ["focal", "batch_focal"])[0] == "focal"
