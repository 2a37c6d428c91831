"""When the engine steps schedulers: after real optimizer updates only, per epoch with the
monitored metric, per param group, and identically across a resume."""

from __future__ import annotations

import copy
import csv
import math

import pytest
from pydantic import Field

import torchtk
from torchtk import Component, Params, hookimpl
from torchtk.core.engine import Run, RunInterrupted
from torchtk.core.errors import UserInputError
from torchtk.core.progress import Reporter
from torchtk.core.spec import load_spec
from torchtk.testing import registry_with


class PoisonParams(Params):
    """A small MLP whose gradient is made infinite at chosen training forward passes."""

    poison: list[int] = Field(default_factory=list, description="1-based training forward passes to poison.")


class StopParams(Params):
    """Stop after the given epoch (to interrupt a run at a known place)."""

    epoch: int = Field(ge=1, description="Last epoch to run.")


class TwoGroupsParams(Params):
    """Give the first layer and the rest their own lr and weight decay."""

    head_lr: float = Field(gt=0, description="Lr of the layers after the first.")


class SteppingPlugin:
    """Components these tests need: a poisonable model, an interrupter, a two-group policy."""

    interrupted = False

    __name__ = "stepping_test_plugin"

    @hookimpl
    def register_components(self, register):
        register(Component("model", "poisoned_mlp", "MLP with infinite gradients on request.", params=PoisonParams))
        register(Component("callback", "stop_after", "Stop after an epoch.", params=StopParams))
        register(Component("freeze", "two_groups", "First layer and the rest as two groups.", params=TwoGroupsParams))

    @hookimpl
    def make_model(self, name, params):
        import torch
        from torch import nn

        class Poisoned(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
                self.calls = 0

            def forward(self, x):
                out = self.net(x)
                if self.training and torch.is_grad_enabled():
                    self.calls += 1
                    if self.calls in params.poison:
                        out.register_hook(lambda grad: grad * math.inf)
                return out

        return Poisoned()

    @hookimpl
    def make_callback(self, name, params):
        plugin = self

        class Interrupt:
            """Ctrl-C after an epoch, once per plugin, so a resumed run with the same spec goes on."""

            @hookimpl
            def on_epoch_end(self, state):
                if state.epoch == params.epoch and not plugin.interrupted:
                    plugin.interrupted = True
                    raise KeyboardInterrupt

        return Interrupt()

    @hookimpl
    def freeze_policy(self, name, params):
        def policy(model):
            modules = list(model.modules())
            first = next(m for m in modules if hasattr(m, "weight"))
            rest = [p for p in model.parameters() if all(p is not q for q in first.parameters())]
            return [{"params": list(first.parameters()), "name": "body"},
                    {"params": rest, "lr": params.head_lr, "weight_decay": 0.0, "name": "head"}]

        return policy


@pytest.fixture
def registry():
    return registry_with(SteppingPlugin())


def build_run(spec, registry, tmp_path):
    return Run(load_spec(spec, registry=registry), registry, Reporter(), tmp_path / "run")


def read_history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def test_no_scheduler_step_when_the_grad_scaler_skips_the_update(small_spec, registry, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec.update(model={"name": "poisoned_mlp", "params": {"poison": [5, 9, 20]}}, precision="fp16", callbacks=[],
                loss="bce_with_logits",
                scheduler={"name": "exponential", "params": {"gamma": 0.99}, "interval": "step"})
    run = build_run(spec, registry, tmp_path)
    run.fit()
    optimizer = run.optimizer
    adam_steps = int(next(iter(optimizer.state.values()))["step"])
    total = run.info.total_steps
    assert total - adam_steps >= 3  # the poisoned updates (and fp16 overflows) were skipped by the scaler
    scheduler = run.schedulers[0].scheduler
    assert scheduler.last_epoch == adam_steps == run.state.step
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.99 ** adam_steps)


def test_interval_override_counts_optimizer_updates_not_batches(small_spec, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = {"name": "step", "params": {"step_size": 1, "gamma": 0.9}, "interval": "step"}
    spec["trainer"].update(epochs=2, accumulate_grad_batches=4)
    result = torchtk.train(spec)
    batches = 12  # 600 training samples / 50
    updates = math.ceil(batches / 4)
    # history logs the lr each epoch's last update used: 2 and 5 scheduler steps in
    assert [row["lr"] for row in result.history] == pytest.approx([0.01 * 0.9 ** (updates - 1),
                                                                   0.01 * 0.9 ** (2 * updates - 1)])


def test_warmup_in_updates_with_accumulation(small_spec, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = {"name": "warmup", "params": {"length": 6, "start_factor": 0.5}, "interval": "step"}
    spec["trainer"].update(epochs=2, accumulate_grad_batches=4)  # 3 updates per epoch: warmup ends with epoch 2
    result = torchtk.train(spec)
    # the last updates of the epochs are updates 3 and 6: warmup steps 2 and 5 of 6
    assert [row["lr"] for row in result.history] == pytest.approx([0.01 * (0.5 + 0.5 * 2 / 6),
                                                                   0.01 * (0.5 + 0.5 * 5 / 6)])


def test_one_cycle_over_a_real_run_ends_at_the_last_update(small_spec, registry, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = {"name": "one_cycle", "params": {"max_lr": 0.05}}
    spec["trainer"].update(epochs=3, accumulate_grad_batches=5)
    run = build_run(spec, registry, tmp_path)
    run.fit()
    scheduler = run.schedulers[0].scheduler
    assert run.schedulers[0].interval == "step"
    assert scheduler.total_steps == 3 * math.ceil(12 / 5) == run.state.step == scheduler.last_epoch
    assert run.state.history[-1]["lr"] == pytest.approx(0.05 / 25 / 1e4)


def test_reduce_on_plateau_receives_the_monitored_metric(small_spec, registry, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = {"name": "reduce_on_plateau", "params": {"mode": "max", "patience": 0}, "monitor": "val_loss"}
    run = build_run(spec, registry, tmp_path)
    run.fit()
    scheduler = run.schedulers[0].scheduler
    assert scheduler.best == max(row["val_loss"] for row in run.state.history)
    assert run.state.history[-1]["lr"] < 0.01  # val_loss fell, which mode max calls no improvement


def test_a_metric_scheduler_cannot_step_per_update(small_spec, registry, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = {"name": "warmup", "interval": "step",
                         "params": {"length": 2, "then": {"name": "reduce_on_plateau"}}}
    with pytest.raises(UserInputError, match=r"scheduler\[0\]: 'warmup' needs the metric 'val_loss'"):
        build_run(spec, registry, tmp_path)


def test_each_param_group_keeps_its_lr_and_is_logged(small_spec, registry, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = [{"name": "two_groups", "params": {"head_lr": 0.001}}]
    spec["scheduler"] = {"name": "warmup", "params": {"length": 2, "start_factor": 0.5,
                                                      "then": {"name": "exponential", "params": {"gamma": 0.5}}}}
    result = torchtk.train(spec, registry=registry)
    rows = read_history(result.run_dir)
    factors = [0.5, 0.75, 1.0]
    assert [float(r["lr/body"]) for r in rows] == pytest.approx([0.01 * f for f in factors])
    assert [float(r["lr/head"]) for r in rows] == pytest.approx([0.001 * f for f in factors])


@pytest.mark.parametrize("scheduler", [
    {"name": "warmup", "params": {"length": 2, "then": {"name": "cosine_annealing", "params": {"T_max": 3}}}},
    {"name": "one_cycle", "params": {"max_lr": 0.05}},
    [{"name": "multiplicative", "params": {"lr_lambda": "0.8"}},
     {"name": "exponential", "interval": "step", "params": {"gamma": 0.99}}],
], ids=["warmup-cosine", "one-cycle", "epoch-and-step-chained"])
def test_a_resumed_run_continues_the_same_lr_sequence(small_spec, registry, tmp_path, scheduler):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = scheduler
    spec["trainer"]["epochs"] = 4
    straight = torchtk.train(spec, registry=registry)
    interrupted_spec = copy.deepcopy(spec)
    interrupted_spec["callbacks"] = spec["callbacks"] + [{"name": "stop_after", "params": {"epoch": 2}}]
    with pytest.raises(RunInterrupted):
        torchtk.train(interrupted_spec, registry=registry)
    run_dir = max((p for p in straight.run_dir.parent.iterdir() if p != straight.run_dir), key=lambda p: p.name)
    assert len(read_history(run_dir)) == 1  # epoch 2 was interrupted before its checkpoint
    resumed = torchtk.train(interrupted_spec, registry=registry, resume=run_dir)
    lrs = [row["lr"] for row in straight.history]
    assert len(set(lrs)) == 4
    assert [row["lr"] for row in resumed.history] == lrs
    assert [float(r["lr"]) for r in read_history(resumed.run_dir)] == lrs
    assert [row["train_loss"] for row in resumed.history] == [row["train_loss"] for row in straight.history]
