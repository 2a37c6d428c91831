"""grad_clip (by norm, by value, grad_norm column), nan_guard (skip, stop), early_stopping
(restore_best, message order) and the engine's train.log and resume-hint lines."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.core.engine import Run, RunInterrupted
from torchtk.core.errors import RunFailed, UserInputError
from torchtk.core.progress import Reporter
from torchtk.core.spec import load_spec
from torchtk.testing import registry_with
from tests.core.test_scheduler_stepping import SteppingPlugin


class ProbePlugin:
    """A ``grad_probe`` callback recording the gradients every update sees after the callbacks before it."""

    __name__ = "grad_probe_plugin"

    def __init__(self):
        self.norms, self.max_abs = [], []

    @hookimpl
    def register_components(self, register):
        register(Component("callback", "grad_probe", "Record gradient norms.", params=NoParams))

    @hookimpl
    def make_callback(self, name, params):
        plugin = self

        class Probe:
            @hookimpl
            def on_step(self, state):
                grads = [p.grad for p in state.model.parameters() if p.grad is not None]
                plugin.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
                plugin.max_abs.append(max(float(g.abs().max()) for g in grads))

        return Probe()


def build_run(spec, registry, tmp_path):
    return Run(load_spec(spec, registry=registry), registry, Reporter(), tmp_path / "run")


def history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def stepping():
    return registry_with(SteppingPlugin())


# -- grad_clip -------------------------------------------------------------------------------


def test_grad_clip_by_norm_bounds_the_total_norm_at_every_step_and_logs_it(small_spec, tmp_path):
    probe = ProbePlugin()
    small_spec["optimizer"]["params"]["lr"] = 0.05
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 0.05, "log_norm": True}}, "grad_probe"]
    result = torchtk.train(small_spec, registry=registry_with(probe))
    assert len(probe.norms) == 3 * 12
    assert max(probe.norms) <= 0.05 * (1 + 1e-5)
    rows = history(result.run_dir)
    assert all(float(row["grad_norm"]) > 0.05 for row in rows)  # logged before clipping
    assert all(math.isfinite(row["grad_norm"]) for row in result.history)


def test_grad_clip_by_value_clamps_every_element(small_spec):
    probe = ProbePlugin()
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"clip_value": 2 ** -10}}, "grad_probe"]
    result = torchtk.train(small_spec, registry=registry_with(probe))
    assert max(probe.max_abs) <= 2 ** -10  # exact in float32
    assert "grad_norm" not in result.history[0]  # the column is asked for with log_norm


@pytest.mark.parametrize("params", [{}, {"max_norm": 1.0, "clip_value": 1.0}])
def test_grad_clip_takes_exactly_one_of_max_norm_and_clip_value(small_spec, params):
    small_spec["callbacks"] = [{"name": "grad_clip", "params": params}]
    with pytest.raises(UserInputError, match=r"callbacks\[0\].*exactly one of max_norm"):
        load_spec(small_spec)


# -- nan_guard ----------------------------------------------------------------------------------


def poisoned(small_spec, poison, mode):
    spec = copy.deepcopy(small_spec)
    spec.update(model={"name": "poisoned_mlp", "params": {"poison": poison}}, loss="bce_with_logits",
                callbacks=[{"name": "nan_guard", "params": {"mode": mode}}],
                scheduler={"name": "exponential", "params": {"gamma": 0.99}, "interval": "step"})
    return spec


def test_nan_guard_skip_skips_the_poisoned_updates_and_their_scheduler_steps(small_spec, stepping, tmp_path):
    run = build_run(poisoned(small_spec, [5, 9, 20], "skip"), stepping, tmp_path)
    run.fit()
    total = run.info.total_steps
    adam_steps = int(next(iter(run.optimizer.state.values()))["step"])
    assert run.state.step == adam_steps == total - 3
    assert run.schedulers[0].scheduler.last_epoch == total - 3
    assert all(torch.isfinite(p).all() for p in run.parts.model.parameters())
    assert [row.get("skipped_steps", 0) for row in run.state.history] == [2, 1, 0]
    log = (run.run_dir.path / "train.log").read_text()
    assert "nan_guard: non-finite gradient in epoch 1, step 5 (batch 5 of 12): update skipped" in log
    assert "epoch 2, step 18 (batch 8 of 12)" in log  # pass 20 is the 8th batch of epoch 2, its 18th real update


def test_nan_guard_stop_fails_the_run_naming_epoch_and_step_and_keeps_the_checkpoint(small_spec, stepping,
                                                                                      spec_file, tk):
    spec = poisoned(small_spec, [15], "stop")
    with pytest.raises(RunFailed, match=r"non-finite gradient in epoch 2, step 15 \(batch 3 of 12\)") as raised:
        torchtk.train(spec, registry=stepping)
    assert "Last good checkpoint" in str(raised.value)
    run_dir = next(Path(spec["trainer"]["output_dir"]).iterdir())
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert "failed: nan_guard" in (run_dir / "train.log").read_text()


def test_nan_guard_does_nothing_on_a_healthy_run(small_spec):
    plain = torchtk.train(copy.deepcopy(small_spec))
    small_spec["callbacks"] = small_spec["callbacks"] + ["nan_guard"]
    guarded = torchtk.train(small_spec)
    assert guarded.history == plain.history


# -- early_stopping -------------------------------------------------------------------------------


def test_restore_best_leaves_the_model_equal_to_best_pt(small_spec, tmp_path):
    small_spec["optimizer"]["params"]["lr"] = 0.3  # noisy: the best epoch is not the last one
    small_spec["callbacks"] = [{"name": "early_stopping", "params": {"patience": 2, "restore_best": True}}]
    small_spec["trainer"]["epochs"] = 30
    from torchtk.core.registry import get_registry

    run = build_run(small_spec, get_registry(), tmp_path)
    result = run.fit()
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert result.stopped_early and best["epoch"] < last["epoch"]
    model = run.parts.model.state_dict()
    assert all(torch.equal(model[k], best["model"][k]) for k in model)
    assert not all(torch.equal(model[k], last["model"][k]) for k in model)
    lines = [line.split(" ", 2)[2] for line in (result.run_dir / "train.log").read_text().splitlines()]
    stop = next(i for i, line in enumerate(lines) if line.startswith("early stopping: val_loss has not improved"))
    assert lines[stop - 1].startswith(f"epoch {last['epoch']} train_loss=")  # the message follows its epoch row
    assert f"restored the best weights, of epoch {best['epoch']}" in lines[stop + 1]
    assert lines[stop + 2] == f"stopped early at epoch {last['epoch']}"


def test_min_delta_counts_only_real_improvements(small_spec):
    small_spec["callbacks"] = [{"name": "early_stopping", "params": {"patience": 1, "min_delta": 1e9}}]
    small_spec["trainer"]["epochs"] = 10
    result = torchtk.train(small_spec)
    assert result.stopped_early and len(result.history) == 2  # epoch 1 sets the best, epoch 2 cannot beat it by 1e9


# -- engine lines (issue 9, item 8) -------------------------------------------------------------------


def test_train_log_epoch_lines_read_epoch_n_then_values(small_spec):
    result = torchtk.train(small_spec)
    epoch_lines = [line.split(" ", 2)[2] for line in (result.run_dir / "train.log").read_text().splitlines()
                   if line.split(" ", 3)[2] == "epoch"]
    assert [line.split()[:2] for line in epoch_lines] == [["epoch", "1"], ["epoch", "2"], ["epoch", "3"]]
    assert "epoch=" not in "".join(epoch_lines) and epoch_lines[0].split()[2].startswith("train_loss=")


def test_the_resume_hint_names_the_spec_the_user_gave(small_spec, spec_file, stepping):
    small_spec["callbacks"] = [{"name": "stop_after", "params": {"epoch": 2}}]
    path = spec_file(small_spec)
    with pytest.raises(RunInterrupted) as raised:
        torchtk.train(path, registry=stepping)
    assert f"continue with: tk train {path} --resume " in str(raised.value) and "SPEC" not in str(raised.value)


def test_the_resume_hint_of_a_dict_spec_names_the_runs_spec_json_which_resumes(small_spec, tmp_path):
    plugin = SteppingPlugin()
    registry = registry_with(plugin)
    small_spec["callbacks"] = [{"name": "stop_after", "params": {"epoch": 2}}]
    with pytest.raises(RunInterrupted) as raised:
        torchtk.train(small_spec, registry=registry)
    hint = str(raised.value).split("continue with: ")[1]
    _, _, spec_json, _, run_dir = hint.split()
    assert spec_json.endswith("spec.json")
    resumed = torchtk.train(spec_json, registry=registry, resume=run_dir)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


class NanLossPlugin(SteppingPlugin):
    """``nan_loss_mlp``: an MLP whose output (so the loss) is NaN at chosen training passes."""

    __name__ = "nan_loss_plugin"

    @hookimpl
    def register_components(self, register):
        from tests.core.test_scheduler_stepping import PoisonParams

        register(Component("model", "nan_loss_mlp", "MLP with NaN outputs on request.", params=PoisonParams))

    @hookimpl
    def make_model(self, name, params):
        from torch import nn

        class NanOut(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
                self.calls = 0

            def forward(self, x):
                out = self.net(x)
                if self.training and torch.is_grad_enabled():
                    self.calls += 1
                    if self.calls in params.poison:
                        out = out * math.nan
                return out

        return NanOut()


def test_nan_guard_skip_on_a_nan_loss_keeps_the_run_going_and_the_mean_finite(small_spec, tmp_path):
    spec = poisoned(small_spec, [3], "skip")
    spec["model"]["name"] = "nan_loss_mlp"
    run = build_run(spec, registry_with(NanLossPlugin()), tmp_path)
    run.fit()
    assert run.state.step == run.info.total_steps - 1
    assert all(math.isfinite(row["train_loss"]) for row in run.state.history)
    assert "non-finite loss and gradient in epoch 1, step 3" in (run.run_dir.path / "train.log").read_text()
