"""The plugin test kit itself: check_plugin finds real contract breaches, run_tiny and run_tk work."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest
from pydantic import Field

import torchtk
from torchtk import Component, Params, hookimpl
from torchtk.testing import TkResult, check_plugin, registry_for, registry_with, run_tiny, run_tk

pytest_plugins = ["pytester"]  # the kit's own pytest plugin, tested in a child pytest


def plugin_of(name: str, kind: str, component: str, build, params=None, extras=None):
    """A plugin module declaring one component, built by ``build(params)``."""
    module = types.ModuleType(name)

    class P(Params):
        """Params."""
        factor: float = Field(1.0, ge=0, description="A factor.")

    @hookimpl
    def register_components(register):
        register(Component(kind, component, "A test component.", params=params or P, extras=extras or {}))

    hook = torchtk.core.components.KINDS[kind].hook

    def make(name, params):
        return build(params)

    module.register_components = register_components
    setattr(module, hook, hookimpl(make))
    return module


def problems(module, **options):
    return list(check_plugin(module, registry_with(module), **options))


def test_a_good_loss_conforms_and_the_report_says_what_was_checked():
    def build(params):
        return lambda output, target: ((output - target) ** 2).mean() * params.factor

    module = plugin_of("kit_good", "loss", "good_mse", build, extras={"prediction": "value"})
    report = check_plugin(module, registry_with(module))
    assert report == [], str(report)
    assert report.checked == ["loss 'good_mse'"]
    assert "listing of 'kit_good'" in report.skipped  # made at run time: no child process can import it


@pytest.mark.parametrize("body, message", [
    (lambda o, t: (o - t) ** 2, "not a 0-dim tensor"),
    (lambda o, t: ((o - t) ** 2).mean() * float("nan"), "for finite inputs"),
    (lambda o, t: ((o - t) ** 2).mean().detach(), "without a gradient"),
    (lambda o, t: o.sum() + t.nonexistent, "gives no finite scalar with a gradient on the 'value' samples"),
])
def test_a_loss_is_checked_on_its_declared_sample_batch(body, message):
    module = plugin_of("kit_loss", "loss", "bad", lambda params: body, extras={"prediction": "value"})
    found = problems(module)
    assert len(found) == 1 and found[0].startswith("loss 'bad': gives no finite scalar") and message in found[0], found


def test_a_loss_declaring_nothing_is_tried_on_every_sample_kind():
    import torch

    def build(params):  # only takes class scores and class indices
        return lambda output, target: torch.nn.functional.cross_entropy(output, target)

    assert problems(plugin_of("kit_ce", "loss", "my_ce", build)) == []


def test_your_own_sample_batch_is_used():
    import torch

    module = plugin_of("kit_own", "loss", "mine", lambda params: lambda o, t: (o * t).sum())
    output = torch.ones(2, 5, requires_grad=True)
    assert problems(module, samples={"mine": (output, torch.ones(2, 5))}) == []
    assert output.grad is not None


def test_a_freeze_policy_that_is_not_idempotent_is_reported():
    def build(params):
        def flip(model):
            for p in model.parameters():
                p.requires_grad_(not p.requires_grad)
        return flip

    found = problems(plugin_of("kit_freeze", "freeze", "flip", build))
    assert found == ["freeze 'flip': is not idempotent: applying it twice changed the requires_grad"]


class Opaque:
    """An object in a state_dict: torch.load(weights_only=True) refuses to rebuild it."""


def test_a_scheduler_whose_state_does_not_load_as_data_is_reported():
    class Keeps:
        def __init__(self, optimizer):
            self.optimizer = optimizer

        def step(self):
            pass

        def state_dict(self):
            return {"kept": Opaque()}

        def load_state_dict(self, state):
            pass

    module = plugin_of("kit_sched", "scheduler", "opaque_state", lambda params: None, extras={"interval": "epoch"})
    module.make_scheduler = hookimpl(lambda name, params, optimizer: Keeps(optimizer))
    found = problems(module)
    assert len(found) == 1 and "state_dict() does not load with torch.load(weights_only=True)" in found[0], found


class CountingCallback:
    def __init__(self, restores: bool = True):
        self.steps = 0
        self.restores = restores

    @hookimpl
    def on_step(self, state):
        self.steps += 1
        state.epoch_values["steps_seen"] = float(self.steps)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        if self.restores:
            self.steps = state["steps"]


def test_a_callback_runs_two_epochs_and_round_trips_its_checkpoint_state(tmp_path):
    module = plugin_of("kit_cb", "callback", "counter", lambda params: CountingCallback())
    report = check_plugin(module, registry_with(module))
    assert report == [] and report.checked == ["callback 'counter'"], str(report)
    run = run_tiny(callback="counter", registry=registry_with(module), output_dir=tmp_path)
    assert [row["steps_seen"] for row in run.history] == [6.0, 12.0]  # 90 training points, batches of 15
    assert run.last_checkpoint.exists() and run.metrics


def test_a_callback_that_does_not_restore_its_state_is_reported():
    module = plugin_of("kit_cb_bad", "callback", "forgetful", lambda params: CountingCallback(restores=False))
    assert problems(module) == ["callback 'forgetful': load_state_dict(saved) then state_dict() differs from the "
                                "saved state (checkpoint round trip)"]


def test_a_callback_that_breaks_the_run_is_reported():
    class Raising:
        @hookimpl
        def on_step(self, state):
            raise RuntimeError("boom")

    found = problems(plugin_of("kit_cb_raise", "callback", "raising", lambda params: Raising()))
    assert len(found) == 1 and found[0].startswith("callback 'raising': a two-epoch run with it failed") \
        and "boom" in found[0], found


def test_a_metric_that_cannot_compute_is_reported_and_a_good_one_passes():
    class Broken:
        def reset(self): pass
        def update(self, output, target): pass
        def compute(self): raise ValueError("nothing to compute")

    found = problems(plugin_of("kit_metric", "metric", "broken", lambda params: Broken()))
    assert len(found) == 1 and "nothing to compute" in found[0]

    class Mean:
        def reset(self): self.total = 0.0
        def update(self, output, target): self.total += float(output.mean())
        def compute(self): return self.total

    assert problems(plugin_of("kit_metric2", "metric", "mean_out", lambda params: Mean())) == []


def test_components_whose_defaults_need_params_are_skipped_with_the_reason_or_built_with_given_params():
    class Needs(Params):
        """Needs a size."""
        size: int = Field(ge=1, description="A size.")

    module = plugin_of("kit_needs", "loss", "sized", lambda params: lambda o, t: ((o - t) ** 2).mean() * params.size,
                       params=Needs, extras={"prediction": "value"})
    report = check_plugin(module, registry_with(module))
    assert report == [] and report.skipped["loss 'sized'"].startswith("needs params (size)")
    report = check_plugin(module, registry_with(module), params={"loss:sized": {"size": 2}})
    assert report.checked == ["loss 'sized'"]
    assert check_plugin(module, registry_with(module), params={"sized": {"size": 0}})[0].startswith(
        "loss 'sized': the params given do not validate: size: Input should be greater than or equal to 1")


LISTS_WITH_TORCH = """
import torch
from torchtk import Component, hookimpl

@hookimpl
def register_components(register):
    register(Component("loss", "eager", "Imports torch at the top."))

@hookimpl
def make_loss(name, params):
    return lambda output, target: ((output - target) ** 2).mean()
"""


def test_a_plugin_that_imports_torch_at_the_top_is_named_with_the_line(tmp_path, monkeypatch):
    (tmp_path / "kit_eager.py").write_text(textwrap.dedent(LISTS_WITH_TORCH))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = check_plugin("kit_eager", registry_with(__import__("kit_eager")))
    finally:
        sys.modules.pop("kit_eager", None)
    assert len(found) == 1 and "listing its components imports torch (first imported at " in found[0], found
    assert f"{tmp_path / 'kit_eager.py'}:2" in found[0]


GOOD_PLUGIN = """
from pydantic import Field
from torchtk import Component, Params, hookimpl

class HalfParams(Params):
    \"\"\"Half the squared error.\"\"\"
    scale: float = Field(0.5, gt=0, description="Scale of the squared error.")

@hookimpl
def register_components(register):
    register(Component("loss", "half_mse", "Half the squared error.", params=HalfParams,
                       extras={"prediction": "value"}))

@hookimpl
def make_loss(name, params):
    def half_mse(output, target):
        return ((output - target) ** 2).mean() * params.scale
    return half_mse
"""


@pytest.mark.parametrize("called", ["torchtk-kitfake", "torchtk_kitfake", "Torchtk.Kitfake", "kitfake",
                                    "torchtk_fake_kit"])
def test_an_installed_plugin_is_found_by_distribution_entry_point_or_module_name(installed_plugins, called):
    installed_plugins("torchtk-kitfake", {"kitfake": "torchtk_fake_kit"}, {"torchtk_fake_kit": GOOD_PLUGIN})
    report = check_plugin(called)
    assert report == [] and report.plugin == "kitfake" and report.checked == ["loss 'half_mse'"], str(report)
    assert not report.skipped  # the listing check ran in a child process


def test_a_plugin_that_is_not_installed_says_what_is(installed_plugins):
    installed_plugins("torchtk-kitfake", {"kitfake": "torchtk_fake_kit"}, {"torchtk_fake_kit": GOOD_PLUGIN})
    [problem] = check_plugin("torchtk-nothing")
    assert problem.startswith("plugin 'torchtk-nothing' is not installed: no plugin, module, entry-point or "
                              "distribution of that name (installed third-party plugins: ")
    assert "kitfake (torchtk-kitfake)" in problem  # with the contrib plugins CI installs, where present


def test_a_distribution_with_two_plugins_is_checked_by_entry_point_name(installed_plugins):
    installed_plugins("torchtk-kitfake", {"kitfake": "torchtk_fake_kit", "other": "torchtk_fake_other"},
                      {"torchtk_fake_kit": GOOD_PLUGIN, "torchtk_fake_other": GOOD_PLUGIN.replace("half_mse", "x")})
    assert check_plugin("torchtk-kitfake") == ["distribution 'torchtk-kitfake' provides 2 plugins (kitfake, other); "
                                               "check each by its entry-point name"]
    assert check_plugin("other", behaviour=False) == []
    assert set(registry_for("torchtk-kitfake").names("loss")) >= {"half_mse", "x"}


def test_registry_for_holds_the_builtins_and_that_plugin_only(installed_plugins):
    installed_plugins("torchtk-kitfake", {"kitfake": "torchtk_fake_kit", "other": "torchtk_fake_other"},
                      {"torchtk_fake_kit": GOOD_PLUGIN, "torchtk_fake_other": GOOD_PLUGIN.replace("half_mse", "x")})
    for called in ("kitfake", "torchtk_fake_kit"):  # the distribution's name loads both (test above)
        registry = registry_for(called)
        assert "half_mse" in registry.names("loss") and "x" not in registry.names("loss")
        assert registry.resolve("loss", "half_mse").provider == "kitfake (torchtk-kitfake 1.2.3)"
        assert "focal" in registry.names("loss")


def test_run_tk_in_process_against_a_registry_and_in_a_child_process(tmp_path):
    module = plugin_of("kit_cli", "loss", "cli_loss", lambda params: None)
    listed = run_tk("list", "losses", "--json", registry=registry_with(module))
    assert isinstance(listed, TkResult) and listed.exit_code == 0
    assert "cli_loss" in [row["name"] for row in listed.json()]
    assert "cli_loss" not in [c.name for c in torchtk.registry.components("loss")]  # restored afterwards
    bad = run_tk("show", "loss", "no_such_loss", subprocess=True, cwd=tmp_path)
    assert bad.exit_code == 2 and "unknown loss 'no_such_loss'" in bad.stderr and bad.stdout == ""


def test_run_tiny_trains_two_epochs_with_the_components_given(tmp_path):
    run = run_tiny(loss="mse", scheduler={"name": "step", "params": {"step_size": 1}}, metric="accuracy",
                   output_dir=tmp_path)
    assert [row["epoch"] for row in run.history] == [1, 2]
    assert run.spec["loss"] == "mse" and "val_accuracy" in run.history[-1]
    assert run.history[1]["lr"] == pytest.approx(run.history[0]["lr"] * 0.1)
    assert run.run_dir.parent == tmp_path and (run.run_dir / "spec.json").exists()

FIXTURE_TESTS = '''
def test_lists(tk):
    result = tk("list", "losses", "--json")
    assert result.exit_code == 0 and "half_mse" in [row["name"] for row in result.json()]

def test_registry_has_the_plugin_only(tk_registry):
    assert tk_registry.resolve("loss", "half_mse").plugin == "kit_fixture_plugin"
    assert [n for n, i in tk_registry.host.plugins.items() if not i.builtin] == ["kit_fixture_plugin"]

def test_trains(run_tiny, tmp_path):
    run = run_tiny(loss="half_mse")
    assert len(run.history) == 2 and run.run_dir.parent == tmp_path / "runs"
'''


def test_the_pytest_plugin_is_installed_and_its_fixtures_test_the_named_plugin(pytester):
    from importlib import metadata

    assert "torchtk.testing.pytest_plugin" in [ep.value for ep in metadata.entry_points(group="pytest11")]
    pytester.makepyfile(kit_fixture_plugin=GOOD_PLUGIN, test_fixtures=FIXTURE_TESTS)
    pytester.makeini("[pytest]\ntorchtk_plugin = kit_fixture_plugin\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_fixtures_say_how_to_name_the_plugin_when_it_is_not(pytester):
    pytester.makepyfile(test_unnamed="def test_it(tk):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the tk_* fixtures need the plugin under test: set `torchtk_plugin = *"])


def test_only_narrows_the_behaviour_checks_and_assert_plugin_ok_lists_the_problems():
    from torchtk.testing import assert_plugin_ok

    module = plugin_of("kit_only", "loss", "returns_a_shape", lambda params: lambda o, t: o - t)
    registry = registry_with(module)
    report = check_plugin(module, registry, only=["loss:other_*"])
    assert report == [] and report.checked == []
    assert report.skipped["loss 'returns_a_shape'"] == "not selected by only=['loss:other_*']"
    with pytest.raises(AssertionError, match=r"(?s)plugin 'kit_only': 1 problem\(s\).*- loss 'returns_a_shape': "
                                             r"gives no finite scalar"):
        assert_plugin_ok(module, registry)


def test_importing_the_kit_and_its_pytest_plugin_imports_no_torch():
    import subprocess

    code = ("import sys, torchtk.testing, torchtk.testing.pytest_plugin; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_a_loss_with_a_mode_param_is_tried_on_that_modes_batches():
    from typing import Literal

    class ModeParams(Params):
        """A mode."""
        mode: Literal["binary", "multiclass"] = Field("multiclass", description="The task.")

    def build(params):
        import torch

        return lambda output, target: torch.nn.functional.nll_loss(output.log_softmax(1), target)  # class indices

    module = plugin_of("kit_mode", "loss", "moded", build, params=ModeParams)
    assert problems(module) == []
    found = problems(module, params={"moded": {"mode": "binary"}})
    assert len(found) == 1 and "on the 'binary' samples (binary:" in found[0], found


def test_an_optimizer_that_never_moves_is_reported_and_one_that_starts_at_its_second_step_passes():
    import torch

    class Still(torch.optim.SGD):
        def step(self, closure=None):
            return None

    class Late(torch.optim.SGD):  # as ADOPT: the first step only gathers statistics
        def step(self, closure=None):
            self.steps = getattr(self, "steps", 0) + 1
            return super().step(closure) if self.steps > 1 else None

    module = types.ModuleType("kit_optimizers")

    @hookimpl
    def register_components(register):
        register(Component("optimizer", "still", "Never moves."))
        register(Component("optimizer", "late", "Moves from its second step on."))

    @hookimpl
    def make_optimizer(name, params, parameters):
        return (Still if name == "still" else Late)(parameters, lr=0.1)

    module.register_components, module.make_optimizer = register_components, make_optimizer
    assert problems(module) == ["optimizer 'still': three steps changed no parameter"]
