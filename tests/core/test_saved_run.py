"""torchtk.load_run: a run directory read back, and its model rebuilt with a checkpoint's
weights through the one build path."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

import torchtk
from torchtk.core.distributed import placement_for
from torchtk.core.errors import UserInputError
from torchtk.core.loop import evaluate


@pytest.fixture
def finished(small_spec):
    return torchtk.train(small_spec, progress=False)


def test_load_run_reads_spec_history_and_rows(finished):
    run = torchtk.load_run(finished.run_dir)
    assert run.spec.name == "rings-small" and run.name == finished.run_dir.name
    assert run.history == [{k: v for k, v in row.items()} for row in finished.history]
    assert run.best == finished.best and run.last == finished.last
    assert run.monitor == "val_loss" and run.mode == "min" and run.epochs_run == 3
    assert run.best_value == finished.best["val_loss"]


def test_model_holds_the_checkpoint_weights_in_eval_mode(finished):
    model = torchtk.load_run(finished.run_dir).model("last")
    saved = torch.load(finished.last_checkpoint, weights_only=True)["model"]
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_the_validation_pass_reproduces_the_best_epoch_exactly(finished):
    run = torchtk.load_run(finished.run_dir)
    parts = run.parts("best")
    row = evaluate(parts, parts.val, placement_for("cpu"))
    assert row == {k: v for k, v in finished.best.items() if k.startswith("val_")}


def test_rebuilding_leaves_the_callers_random_state_alone(finished):
    run = torchtk.load_run(finished.run_dir)
    torch.manual_seed(123), random.seed(123)
    expected = torch.rand(3), random.random()
    torch.manual_seed(123), random.seed(123)
    run.parts()
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_a_model_built_from_a_weights_file_needs_that_file_no_more(tmp_path, small_spec, finished):
    """The weights param is pointed at the run's own checkpoint when the model is rebuilt."""
    spec = copy.deepcopy(small_spec)
    spec["model"]["params"]["weights"] = str(finished.best_checkpoint)
    spec["trainer"]["output_dir"] = str(tmp_path / "second")
    tuned = torchtk.train(spec, progress=False)
    finished.best_checkpoint.unlink()  # the pretrained file is gone
    model = torchtk.load_run(tuned.run_dir).model()
    saved = torch.load(tuned.best_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_a_checkpoint_of_another_spec_is_refused(tmp_path, small_spec, finished):
    other = copy.deepcopy(small_spec)
    other["model"]["params"]["hidden"] = [8]
    other["trainer"]["output_dir"] = str(tmp_path / "other")
    foreign = torchtk.train(other, progress=False).best_checkpoint
    with pytest.raises(UserInputError, match=r"another spec .* differs at model.params.hidden"):
        torchtk.load_run(finished.run_dir).model(foreign)


@pytest.mark.parametrize("content", [b"not a checkpoint", "tensor", "list"])
def test_a_file_that_is_no_checkpoint_is_refused(tmp_path, finished, content):
    path = tmp_path / "bad.pt"
    if content == "tensor":
        torch.save(torch.zeros(2), path)
    elif content == "list":
        torch.save([1, 2], path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=r"bad\.pt"):
        torchtk.load_run(finished.run_dir).model(path)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        torchtk.load_run(tmp_path / "nowhere")
    with pytest.raises(UserInputError, match="no spec.json"):
        torchtk.load_run(tmp_path)


def test_a_missing_best_checkpoint_names_the_alternatives(finished):
    finished.best_checkpoint.unlink()
    with pytest.raises(UserInputError, match="choose last or a file"):
        torchtk.load_run(finished.run_dir).model("best")


def test_settings_added_since_a_checkpoint_was_written_count_at_their_default(finished):
    """A checkpoint from before a metric's ``train`` setting existed still belongs to its run."""
    path = finished.best_checkpoint
    payload = torch.load(path, weights_only=True)
    for metric in payload["spec"]["metrics"]:
        metric.pop("train")
    torch.save(payload, path)
    torchtk.load_run(finished.run_dir).model("best")
    spec = json.loads((finished.run_dir / "spec.json").read_text())
    assert spec["metrics"][0]["train"] is False
