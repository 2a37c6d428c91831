"""nan or inf in the weights, the loss or the data: the run stops (or nan_guard skips, as
configured), and no checkpoint ever holds a non-finite model, so the "last good
checkpoint" the message names is good."""

from __future__ import annotations

import math

import pytest
import torch

from torchtk.core.checkpoint import non_finite

pytestmark = pytest.mark.faults


def finite(path):
    return non_finite(torch.load(path, weights_only=True)["model"]) == []


def test_weights_that_turn_inf_with_a_finite_loss_are_never_checkpointed(tk, spec_file, small_spec, tmp_path,
                                                                        faults_plugin):
    """Found: with val_split 0 (a train_loss monitor) the loss of the epoch whose last update
    broke the weights is still finite, and best.pt and last.pt got the broken model, which
    the message then called the last good checkpoint."""
    small_spec["data"]["val_split"] = 0
    small_spec["trainer"].update(monitor="train_loss", epochs=4)
    small_spec["callbacks"] = [{"name": "poison", "params": {"epoch": 2}}]
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("error: the model's weights became nan or inf in epoch 2 (0.weight); "
                                    "last.pt and best.pt were not written over. Last good checkpoint: "), result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    for name in ("last.pt", "best.pt"):
        assert torch.load(run / "checkpoints" / name, weights_only=True)["epoch"] == 1
        assert finite(run / "checkpoints" / name)
    assert "Traceback" not in result.stderr


def test_a_nan_loss_stops_the_run_before_any_checkpoint_of_that_epoch(tk, spec_file, small_spec, tmp_path):
    small_spec["data"]["val_split"] = 0
    small_spec["trainer"].update(monitor="train_loss", epochs=3)
    small_spec["optimizer"] = {"name": "sgd", "params": {"lr": 1e30}}
    small_spec["callbacks"] = []
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 1 and "train_loss became" in result.stderr, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    for path in (run / "checkpoints").glob("*.pt"):
        assert finite(path), path


@pytest.mark.parametrize("guard", [None, "skip"])
def test_nan_in_the_data_stops_the_run_or_is_skipped_by_nan_guard(tk, spec_file, small_spec, tmp_path, faults_plugin,
                                                                  guard):
    small_spec["data"] = {"name": "nan_rings", "batch_size": 50, "val_split": 0.0}
    small_spec["trainer"].update(monitor="train_loss", epochs=2)
    small_spec["callbacks"] = [{"name": "nan_guard", "params": {"mode": guard}}] if guard else []
    result = tk("train", spec_file(small_spec), "--json")
    (run,) = (tmp_path / "runs").iterdir()
    if guard is None:
        assert result.exit_code == 1 and "train_loss became nan in epoch 1" in result.stderr, result.stderr
        assert "No checkpoint was written yet" in result.stderr
        assert not list((run / "checkpoints").glob("*.pt"))
    else:
        assert result.exit_code == 0, result.stderr
        assert "update skipped" in (run / "train.log").read_text()
        assert math.isfinite(result.json()["best"]["train_loss"])
        for name in ("last.pt", "best.pt"):
            assert finite(run / "checkpoints" / name)


def test_nan_guard_skipping_every_update_of_an_epoch_stops_the_run_clearly(tk, spec_file, small_spec, tmp_path,
                                                                          faults_plugin):
    """Found here: every batch poisoned, every update skipped: the epoch's mean divided by
    zero samples (ZeroDivisionError); now its train_loss is nan and the run stops saying so."""
    small_spec["data"] = {"name": "nan_rings", "params": {"every": 7}, "batch_size": 50, "val_split": 0.0}
    small_spec["trainer"].update(monitor="train_loss", epochs=2)
    small_spec["callbacks"] = [{"name": "nan_guard", "params": {"mode": "skip"}}]
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("error: train_loss became nan in epoch 1. No checkpoint was written yet."), result.stderr


def test_non_finite_names_the_tensors_and_never_calls_large_finite_weights_broken():
    state = {"big": torch.full((1000,), 3e38), "half": torch.full((4,), -60000.0, dtype=torch.float16),
             "steps": torch.tensor(7), "ok": torch.ones(3, dtype=torch.bfloat16),
             "huge": torch.tensor([1e300, -1e300], dtype=torch.float64), "empty": torch.zeros(0)}
    assert non_finite(state) == []  # a sum or a norm would overflow on "big" and "half", a float32 cast on "huge"
    state["nan"] = torch.tensor([1.0, math.nan])
    state["inf"] = torch.tensor([-math.inf], dtype=torch.float64)
    state["half_inf"] = torch.tensor([math.inf], dtype=torch.float16)
    assert non_finite(state) == ["nan", "inf", "half_inf"]
