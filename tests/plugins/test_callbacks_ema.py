"""ema: the average against one computed by hand, warmup, validation with the average,
and an interrupted run resumed bit for bit."""

from __future__ import annotations

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.core.engine import Run, RunInterrupted
from torchtk.core.progress import Reporter
from torchtk.core.spec import load_spec
from torchtk.testing import registry_with
from tests.core.test_scheduler_stepping import SteppingPlugin


class WeightsPlugin(SteppingPlugin):
    """Adds ``weights_probe``: the model's weights after every update and at validation start."""

    __name__ = "weights_probe_plugin"

    def __init__(self):
        self.after_update, self.at_validation = [], []

    @hookimpl
    def register_components(self, register):
        super().register_components(register)
        register(Component("callback", "weights_probe", "Record weights.", params=NoParams))

    @hookimpl
    def make_callback(self, name, params):
        if name != "weights_probe":
            return super().make_callback(name, params)
        plugin = self

        class Probe:
            @hookimpl
            def on_step_end(self, state):
                plugin.after_update.append([p.detach().clone() for p in state.model.parameters()])

            @hookimpl
            def on_validation_start(self, state):
                plugin.at_validation.append([p.detach().clone() for p in state.model.parameters()])

        return Probe()


def ema_run(small_spec, tmp_path, plugin, **params):
    small_spec["callbacks"] = [{"name": "ema", "params": params}, "weights_probe"]
    small_spec["trainer"]["epochs"] = 2
    registry = registry_with(plugin)
    run = Run(load_spec(small_spec, registry=registry), registry, Reporter(), tmp_path / "run")
    run.fit()
    return run, next(iter(run.parts.callbacks.values())).ema


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_equals_the_hand_computed_average(small_spec, tmp_path, warmup):
    plugin = WeightsPlugin()
    run, ema = ema_run(small_spec, tmp_path, plugin, decay=0.9, warmup=warmup)
    average = [w.double() for w in plugin.after_update[0]]
    for t, weights in enumerate(plugin.after_update[1:], start=1):
        decay = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        average = [decay * a + (1 - decay) * w.double() for a, w in zip(average, weights)]
    assert int(ema.n_averaged) == len(plugin.after_update) == 24
    for got, want in zip(ema.module.parameters(), average):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(ema.module.parameters()), next(run.parts.model.parameters()))


def test_ema_validate_swaps_the_average_in_and_the_training_weights_back(small_spec, tmp_path):
    plugin = WeightsPlugin()
    run, ema = ema_run(small_spec, tmp_path, plugin, decay=0.5, for_validation=True)
    final_average = [p.detach() for p in ema.module.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(plugin.at_validation[-1], final_average))  # validated with it
    assert all(torch.equal(a, b) for a, b in zip(run.parts.model.parameters(), plugin.after_update[-1]))


def test_ema_resumes_bit_identically_and_is_in_the_checkpoint(small_spec):
    plugin = SteppingPlugin()
    registry = registry_with(plugin)
    small_spec["callbacks"] = [{"name": "ema", "params": {"decay": 0.8, "for_validation": True}}]
    small_spec["trainer"]["epochs"] = 4
    straight = torchtk.train(small_spec, registry=registry)
    small_spec["callbacks"].append({"name": "stop_after", "params": {"epoch": 2}})
    with pytest.raises(RunInterrupted):
        torchtk.train(small_spec, registry=registry)
    run_dir = max((p for p in straight.run_dir.parent.iterdir() if p != straight.run_dir), key=lambda p: p.name)
    resumed = torchtk.train(small_spec, registry=registry, resume=run_dir)
    assert resumed.history == straight.history
    a = torch.load(straight.run_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "checkpoints" / "last.pt", weights_only=True)
    average_a, average_b = a["callbacks"]["callbacks[0]:ema"]["average"], b["callbacks"]["callbacks[0]:ema"]["average"]
    assert average_a.keys() == average_b.keys() and all(torch.equal(average_a[k], average_b[k]) for k in average_a)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_best_pt_holds_the_validated_average_and_last_pt_the_training_weights(small_spec):
    """With for_validation, best.pt's model is the EMA weights its val metrics came from
    (what early stopping's restore_best loads back); last.pt keeps the training weights."""
    small_spec["callbacks"] = [{"name": "ema", "params": {"decay": 0.5, "for_validation": True}},
                               {"name": "early_stopping", "params": {"patience": 10, "restore_best": True}}]
    small_spec["trainer"].update(epochs=3, monitor="val_loss", mode="min")
    result = torchtk.train(small_spec)
    best = torch.load(result.best_checkpoint, weights_only=True)
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert "validated_model" not in best and "validated_model" not in last
    best_average = best["callbacks"]["callbacks[0]:ema"]["average"]  # the average at the best epoch
    assert all(torch.equal(best["model"][k], best_average[f"module.{k}"]) for k in best["model"])
    last_average = last["callbacks"]["callbacks[0]:ema"]["average"]
    assert not all(torch.equal(last["model"][k], last_average[f"module.{k}"]) for k in last["model"])
    restored = result.model.state_dict()
    assert all(torch.equal(restored[k], best["model"][k]) for k in best["model"])


def test_without_for_validation_best_pt_holds_the_training_weights(small_spec):
    small_spec["callbacks"] = [{"name": "ema", "params": {"decay": 0.5}}]
    small_spec["trainer"]["epochs"] = 1
    result = torchtk.train(small_spec)
    best = torch.load(result.best_checkpoint, weights_only=True)
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
