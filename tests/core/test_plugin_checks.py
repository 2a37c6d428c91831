"""Plugin mistakes that used to pass silently: a misnamed callback hook, a plain pydantic
params model, a plugin whose import makes every listing slow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

import torchtk
from torchtk import Component, Params, hookimpl
from torchtk.core.errors import BrokenPluginError, UserInputError
from torchtk.core.plugin_checks import RUN_HOOKS, callback_method_problems, import_cost_in_fresh_process
from torchtk.testing import registry_with

ROOT = Path(__file__).resolve().parents[2]


def callback_plugin(name: str, callback_class: type) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_components(register):
        register(Component("callback", "mine", "A callback under test.", params=torchtk.NoParams))

    @hookimpl
    def make_callback(name, params):
        return callback_class()

    module.register_components, module.make_callback = register_components, make_callback
    return module


class Misspelt:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def on_stepp(self, state):
        self.calls += 1


class Unmarked:
    def on_epoch_end(self, state):  # no @hookimpl: pluggy would never call it
        raise AssertionError("never called")


class Fine:
    """Hooks, checkpointed state, private and ordinary public helpers: all allowed."""

    def __init__(self):
        self.seen = 0

    @hookimpl
    def on_step_end(self, state):
        self.seen += self._one()

    def _one(self):
        return 1

    def better(self, a, b):
        return a < b

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_run_hooks_are_the_hookspecs_run_calls():
    assert RUN_HOOKS == ("on_fit_start", "on_epoch_start", "on_step", "on_step_end", "on_validation_start",
                         "on_validation_end", "on_epoch_end", "on_save_checkpoint", "on_load_checkpoint",
                         "on_exception", "on_fit_end")


def test_a_misspelt_hook_method_is_refused_before_training_naming_it_the_hook_and_the_plugin(small_spec, tmp_path):
    small_spec["callbacks"] = ["mine"]
    with pytest.raises(UserInputError) as raised:
        torchtk.train(small_spec, registry=registry_with(callback_plugin("torchtk_misspelt", Misspelt)))
    message = str(raised.value)
    assert message.startswith("callbacks[0] 'mine' (plugin torchtk_misspelt): method 'on_stepp' is not a run hook "
                              "(did you mean 'on_step'?), so it is never called."), message
    assert raised.value.exit_code == 2
    assert not (tmp_path / "runs").exists()  # refused while building: no run directory


def test_the_cli_refuses_it_with_exit_2_and_one_line(tk, spec_file, small_spec, installed_plugins):
    installed_plugins("torchtk-misspelt", {"misspelt": "torchtk_fake_misspelt"}, {"torchtk_fake_misspelt": """
        from torchtk import Component, NoParams, hookimpl

        class Late:
            @hookimpl
            def on_epoch_ends(self, state):
                pass

        @hookimpl
        def register_components(register):
            register(Component("callback", "late", "Misspelt hook.", params=NoParams))

        @hookimpl
        def make_callback(name, params):
            return Late()
        """})
    small_spec["callbacks"] = ["late"]
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: callbacks[0] 'late' (plugin misspelt, torchtk-misspelt 1.2.3): method 'on_epoch_ends' is not a run "
        "hook (did you mean 'on_epoch_end'?), so it is never called. Run hooks: " + ", ".join(RUN_HOOKS)
        + " (`tk hooks` documents each); other public methods need a name not starting with on_"]


def test_a_run_hook_without_hookimpl_is_refused_too():
    assert callback_method_problems(Unmarked()) == [
        "method 'on_epoch_end' is a run hook but lacks @torchtk.hookimpl, so it is never called"]


def test_an_unknown_name_with_hookimpl_is_refused_whatever_its_prefix():
    class Marked:
        @hookimpl
        def after_step(self, state):
            pass

    assert callback_method_problems(Marked()) == ["method 'after_step' is not a run hook (did you mean "
                                                  "'on_step'?), so it is never called"]


def test_private_state_and_helper_methods_are_fine_and_the_callback_trains(small_spec):
    assert callback_method_problems(Fine()) == []
    small_spec["callbacks"] = ["mine"]
    small_spec["trainer"]["epochs"] = 1
    assert torchtk.train(small_spec, registry=registry_with(callback_plugin("torchtk_fine", Fine))).last["epoch"] == 1


def test_every_built_in_callback_passes_the_check():
    from torchtk.core.components import load_object
    from torchtk.plugins.callbacks import _IMPLEMENTATIONS

    plugins = torchtk.registry.host.plugins
    built_in = {c.name for c in torchtk.registry.components("callback") if plugins[c.plugin].builtin}
    assert set(_IMPLEMENTATIONS) == built_in  # installed contrib plugins (torchtk-swa) have their own tests
    for name, target in _IMPLEMENTATIONS.items():
        assert callback_method_problems(load_object(target)) == [], name


# -- params models ------------------------------------------------------------------------------


class LooseParams(BaseModel):
    """A plain pydantic model: "0.5" becomes 0.5, {"alpah": 1} is dropped."""
    alpha: float = Field(1.0, description="A weight.")


class LoosenedParams(Params):
    """torchtk.Params with its strictness turned off."""
    model_config = ConfigDict(extra="ignore", strict=False)
    alpha: float = Field(1.0, description="A weight.")


def loss_plugin(name, params):
    module = types.ModuleType(name)

    @hookimpl
    def register_components(register):
        register(Component("loss", "loose", "A loss with a loose params model.", params=params))
        register(Component("loss", "fine", "A loss with a strict one.", params=torchtk.NoParams))

    @hookimpl
    def make_loss(name, params):
        return lambda output, target: (output - target).pow(2).mean()

    module.register_components, module.make_loss = register_components, make_loss
    return module


@pytest.mark.parametrize("params, reason", [
    (LooseParams, "params model LooseParams is a plain pydantic BaseModel, which coerces '0.5' to 0.5 and silently "
                  "drops misspelt keys; subclass torchtk.Params instead"),
    (LoosenedParams, "params model LoosenedParams overrides torchtk.Params' strictness"),
])
def test_a_loose_params_model_makes_the_plugin_broken_at_registration(params, reason):
    expected = "torchtk plugin 'torchtk_loose' failed to load and is skipped: TorchtkError: loss 'loose': " + reason
    with pytest.warns(UserWarning, match=re.escape(expected)):
        registry = registry_with(loss_plugin("torchtk_loose", params))
        names = registry.names("loss")
    assert "loose" not in names and "fine" not in names  # the whole plugin is out, as for any broken plugin
    from torchtk.core.report import plugin_report

    [row] = [p for p in plugin_report(registry)["plugins"] if p["name"] == "torchtk_loose"]
    assert row["status"].startswith("broken: TorchtkError: loss 'loose': params model")
    with pytest.raises(BrokenPluginError, match="Plugins that failed to load and may provide it: torchtk_loose"):
        registry.resolve("loss", "loose")


def test_a_lazy_loose_params_model_is_refused_when_it_loads(small_spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = registry_with(loss_plugin("torchtk_lazy_loose", lambda: LooseParams))
        assert "loose" in registry.names("loss")  # a lazy model is not loaded by listing
        small_spec["loss"] = "loose"
        with pytest.raises(UserInputError, match=r"loss\[0\].name: .*cannot load its params model: TypeError: "
                                                 "params model LooseParams is a plain pydantic BaseModel"):
            torchtk.load_spec(small_spec, registry=registry)
    assert registry.host.plugins["torchtk_lazy_loose"].broken


# -- slow plugins ---------------------------------------------------------------------------------

HEAVY_PLUGIN = """
import torch  # at module level: every tk list pays for it
from torchtk import Component, NoParams, hookimpl

@hookimpl
def register_components(register):
    register(Component("loss", "heavy", "Imports torch when loaded.", params=NoParams))
"""


def _fake_dist(folder: Path) -> None:
    info = folder / "torchtk_heavy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchtk-heavy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[torchtk]\nheavy = torchtk_fake_heavy\n")
    (folder / "torchtk_fake_heavy.py").write_text(HEAVY_PLUGIN)


def test_tk_plugins_names_the_plugin_that_imports_torch(tmp_path):
    """In a fresh interpreter, as a user runs it: torch is imported by the plugin alone."""
    _fake_dist(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "torchtk", "plugins"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("slow:")]
    assert line.startswith("slow: plugin 'heavy' (torchtk-heavy 1.0) imports torch when loaded ("), line
    assert line.endswith(" s): every `tk list` pays for it; import heavy libraries inside the hooks that build "
                         "components, not at module level"), line
    assert [line for line in done.stdout.splitlines() if "slow:" in line] == [line]  # the built-ins are not slow


def test_the_report_and_the_fresh_process_measure_agree_on_what_was_imported(tmp_path, monkeypatch):
    _fake_dist(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cost = import_cost_in_fresh_process("torchtk_fake_heavy")
    assert cost.heavy == ["torch"] and cost.seconds > 0 and cost.slow
    assert import_cost_in_fresh_process("torchtk.plugins.losses").heavy == []  # the built-ins import no torch


def test_the_kit_can_ask_whether_a_plugin_module_makes_listing_slow(tmp_path, monkeypatch):
    from torchtk.core.plugins import listing_cost_problem

    _fake_dist(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = listing_cost_problem("torchtk_fake_heavy")
    assert problem.startswith("plugin module 'torchtk_fake_heavy' imports torch when loaded (")
    assert listing_cost_problem("torchtk.plugins.metrics") is None
