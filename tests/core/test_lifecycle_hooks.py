"""The lifecycle hooks callbacks need (epoch start, validation, checkpoints, exceptions),
callback state by stable key, and the checkpoint formats a resume reads."""

from __future__ import annotations

import pytest
import torch

import torchtk
from torchtk import hookimpl
from torchtk.core.errors import RunFailed, RunInterrupted
from torchtk.testing import registry_with

from tests.core.test_engine import one_component_plugin

NEW_HOOKS = ("on_epoch_start", "on_validation_start", "on_validation_end", "on_save_checkpoint",
             "on_load_checkpoint", "on_exception")


class Lifecycle:
    """Records every lifecycle hook; adds its own entry to each checkpoint."""

    def __init__(self, log, fail_at_epoch=None, error=ValueError):
        self.log, self.fail_at_epoch, self.error = log, fail_at_epoch, error

    @hookimpl
    def on_fit_start(self, state):
        self.log.append("fit_start")

    @hookimpl
    def on_epoch_start(self, state):
        self.log.append(f"epoch_start {state.epoch}")

    @hookimpl
    def on_validation_start(self, state):
        self.log.append("validation_start")
        self.training_mode_before_validation = state.model.training

    @hookimpl
    def on_validation_end(self, state):
        self.log.append(f"validation_end val_loss={'val_loss' in state.metrics}")

    @hookimpl
    def on_epoch_end(self, state):
        self.log.append("epoch_end")
        if state.epoch == self.fail_at_epoch:
            raise self.error("boom")

    @hookimpl
    def on_save_checkpoint(self, state, checkpoint):
        self.log.append(f"save {checkpoint['epoch']}")
        checkpoint["lifecycle"] = {"saved_at": state.epoch, "weights": torch.ones(2)}

    @hookimpl
    def on_load_checkpoint(self, state, checkpoint):
        self.log.append(f"load {checkpoint['lifecycle']['saved_at']} step={state.step}")

    @hookimpl
    def on_exception(self, state, exception):
        self.log.append(f"exception {type(exception).__name__} epoch={state.epoch}")

    @hookimpl
    def on_fit_end(self, state):
        self.log.append("fit_end")


def lifecycle_registry(log, **options):
    return registry_with(one_component_plugin("callback", "lifecycle", lambda: Lifecycle(log, **options)))


def test_every_lifecycle_hook_is_called_in_order(small_spec):
    log = []
    small_spec["callbacks"] = ["lifecycle"]
    small_spec["trainer"]["epochs"] = 2
    result = torchtk.train(small_spec, registry=lifecycle_registry(log))
    epoch = ["validation_start", "validation_end val_loss=True", "epoch_end"]
    assert log == ["fit_start", "epoch_start 1", *epoch, "save 1", "epoch_start 2", *epoch, "save 2", "fit_end"]
    payload = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert payload["lifecycle"]["saved_at"] == 2 and torch.equal(payload["lifecycle"]["weights"], torch.ones(2))


def test_no_validation_hooks_without_a_validation_split(small_spec):
    log = []
    small_spec.update(callbacks=["lifecycle"], metrics=[])
    small_spec["data"]["val_split"] = 0
    small_spec["trainer"].update(epochs=1, monitor="train_loss")
    torchtk.train(small_spec, registry=lifecycle_registry(log))
    assert log == ["fit_start", "epoch_start 1", "epoch_end", "save 1", "fit_end"]


def test_on_load_checkpoint_runs_on_resume_after_the_core_restored_the_state(small_spec):
    log = []
    small_spec["callbacks"] = ["lifecycle"]
    registry = lifecycle_registry(log)
    partial = torchtk.train(small_spec, registry=registry, overrides=["trainer.epochs=1"])
    log.clear()
    torchtk.train(small_spec, registry=registry, overrides=["trainer.epochs=2"], resume=partial.run_dir)
    assert log[0] == "load 1 step=12"  # 12 updates in epoch 1: the state was restored first
    assert log[1:3] == ["fit_start", "epoch_start 2"]


@pytest.mark.parametrize("error, raised", [(ValueError, RunFailed), (KeyboardInterrupt, RunInterrupted)])
def test_on_exception_sees_what_ended_the_run_and_on_fit_end_is_not_called(small_spec, error, raised):
    log = []
    small_spec["callbacks"] = ["lifecycle"]
    with pytest.raises(raised):
        torchtk.train(small_spec, registry=lifecycle_registry(log, fail_at_epoch=2, error=error))
    assert log[-1] == f"exception {error.__name__} epoch=2"
    assert "fit_end" not in log


class BrokenOnException:
    @hookimpl
    def on_epoch_end(self, state):
        raise ValueError("the real error")

    @hookimpl
    def on_exception(self, state, exception):
        raise RuntimeError("a broken handler")


def test_a_failing_on_exception_never_hides_the_original_error(small_spec, tmp_path):
    small_spec["callbacks"] = ["broken"]
    registry = registry_with(one_component_plugin("callback", "broken", BrokenOnException))
    with pytest.raises(RunFailed, match="the real error"):
        torchtk.train(small_spec, registry=registry)
    (run_dir,) = (tmp_path / "runs").iterdir()
    log = (run_dir / "train.log").read_text()
    assert "on_exception failed: RuntimeError: a broken handler" in log and "the real error" in log


def test_callback_state_is_stored_by_a_stable_key(small_spec):
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 20}},
                               {"name": "early_stopping", "params": {"patience": 5}}]
    small_spec["trainer"]["epochs"] = 1
    run_dir = torchtk.train(small_spec).run_dir
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert payload["version"] == 2
    assert list(payload["callbacks"]) == ["callbacks[1]:early_stopping"]  # grad_clip has no state
    assert payload["callbacks"]["callbacks[1]:early_stopping"]["bad_epochs"] == 0
    assert payload["state"]["step"] == payload["step"] == 12


def as_format_1(path):
    """Rewrite a checkpoint in the layout of the first release (state at the top level,
    callback states as a list by position)."""
    payload = torch.load(path, weights_only=True)
    state = payload.pop("state")
    callbacks = payload.pop("callbacks")
    payload.update(version=1, history=state["history"], best_value=state["best_value"],
                   stopped_early=state["should_stop"], callbacks=[None, callbacks["callbacks[1]:early_stopping"]])
    torch.save(payload, path)


def test_a_checkpoint_of_the_first_format_still_resumes_identically(small_spec):
    small_spec["callbacks"].append({"name": "early_stopping", "params": {"patience": 5}})
    straight = torchtk.train(small_spec)
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=2"])
    as_format_1(partial.run_dir / "checkpoints" / "last.pt")
    resumed = torchtk.train(small_spec, resume=partial.run_dir)
    assert resumed.history == straight.history and resumed.best == straight.best


def test_train_state_round_trips_through_its_state_dict():
    from torchtk.core.state import RunInfo, TrainState

    info = RunInfo(epochs=3, steps_per_epoch=2, batches_per_epoch=2)
    state = TrainState(model=None, optimizer=None, run=info, device="cpu", epoch=2, step=4,
                       history=[{"epoch": 1, "val_loss": 0.5}], best_value=0.5, best_row={"epoch": 1, "val_loss": 0.5},
                       should_stop=True, last_update_lrs={"lr": 0.1})
    fresh = TrainState(model=None, optimizer=None, run=info, device="cpu")
    fresh.load_state_dict(state.state_dict())
    assert fresh.state_dict() == state.state_dict()
    assert fresh.history is not state.history  # a copy: the restored run appends to its own list


def test_new_hooks_are_free_when_nobody_implements_them(small_spec, tmp_path):
    from torchtk.core.engine import Run
    from torchtk.core.progress import Reporter
    from torchtk.core.spec import load_spec

    registry = torchtk.registry
    run = Run(load_spec(small_spec, registry=registry), registry, Reporter(), tmp_path / "run")
    assert all(getattr(run.parts.hooks, name) is None for name in NEW_HOOKS)
