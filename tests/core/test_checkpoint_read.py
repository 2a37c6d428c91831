"""Reading checkpoints and weights files that torchtk did not write as they are: a pickled
object is refused and its code never runs; a file ``torch.load(weights_only=True)``
reads but that is malformed (a list, a tensor, missing entries, a bad random state, a
garbage scheduler state) is exit 2 naming the file and the entry, before anything is
loaded into the run, and never "the run failed in epoch 0"."""

from __future__ import annotations

import builtins
import copy
import json

import pytest
import torch

import torchtk
from torchtk.core.errors import UserInputError


class CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: a file that appears means code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


@pytest.fixture
def run(small_spec, spec_file):
    """A finished one-epoch run of the small spec: (spec file, run dir, its last.pt payload)."""
    small_spec["trainer"]["epochs"] = 1
    small_spec["callbacks"].append({"name": "early_stopping", "params": {"patience": 3}})
    path = spec_file(small_spec)
    result = torchtk.train(str(path))
    last = result.run_dir / "checkpoints" / "last.pt"
    return path, result.run_dir, torch.load(last, weights_only=True)


def resume_with(tk, run, payload):
    """Replace last.pt with ``payload`` and resume; the error line, having checked that the run
    directory is as it was (nothing written, nothing loaded)."""
    path, run_dir, _ = run
    last = run_dir / "checkpoints" / "last.pt"
    torch.save(payload, last)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "train.log"}
    result = tk("train", path, "--resume", run_dir, "--set", "trainer.epochs=2")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: --resume: {last}") and "failed in epoch" not in result.stderr, line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "train.log"} == before
    return line


def altered(payload, **changes):
    changed = copy.deepcopy(payload)
    for dotted, value in changes.items():
        node, *path, key = [changed, *dotted.split("__")]
        for part in path:
            node = node[int(part) if part.isdigit() else part]
        if value is KeyError:
            del node[key]
        else:
            node[int(key) if key.isdigit() else key] = value
    return changed


def test_a_pickled_object_in_a_checkpoint_is_refused_and_never_runs(tk, run, tmp_path):
    marker = tmp_path / "code-ran"
    payload = {**run[2], "spec": CreatesAFile(marker)}
    line = resume_with(tk, run, payload)
    assert "holds a pickled Python object (io.open), which torchtk never loads" in line
    assert "weights_only=True" in line and not marker.exists()


def test_the_weights_only_refusal_holds_even_with_torch_s_opt_out_variable(tk, run, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # only changes calls that do not pass weights_only
    marker = tmp_path / "code-ran"
    resume_with(tk, run, {**run[2], "model": CreatesAFile(marker)})
    assert not marker.exists()


@pytest.mark.parametrize(("payload", "expected"), [
    ([1, 2, 3], "holds a list, not a torchtk checkpoint"),
    (torch.zeros(3), "holds a Tensor, not a torchtk checkpoint"),
    ({"version": 2}, "'epoch' is missing; 'step' is missing; 'model' is missing"),
    ({"version": 99}, "has checkpoint format 99"),
])
def test_a_checkpoint_that_is_not_a_checkpoint_is_refused(tk, run, payload, expected):
    assert expected in resume_with(tk, run, payload)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"rng__torch": torch.zeros(3, dtype=torch.uint8)}, "'rng.torch' is not a torch random state"),
    ({"rng__generator": [1, 2]}, "'rng.generator' is not a torch random state"),
    ({"rng__python": [1, 2, 3]}, "'rng.python' is not a Python random state"),
    ({"rng": KeyError}, "'rng' is missing"),
    ({"schedulers__0": {"garbage": 1}}, "'schedulers[0]' is not this object's state (missing base_lrs"),
    ({"schedulers__0__last_epoch": "three"}, "'schedulers[0].last_epoch' is a string, where this run's holds a number"),
    ({"schedulers__0__base_lrs": 0.5}, "'schedulers[0].base_lrs' is a number, where this run's holds a list"),
    ({"schedulers": []}, "'schedulers' holds 0 scheduler states, this run has 1 schedulers"),
    ({"schedulers": "x"}, "'schedulers' is a string, not a list"),
    ({"model": [1]}, "'model' is a list, not a dict"),
    ({"model__fc": 3}, "'model' is not a state_dict (names to tensors)"),
    ({"callbacks": [1]}, "'callbacks' is a list, not a dict"),
    ({"optimizer": {"state": []}}, "'optimizer' is not an optimizer state_dict"),
    ({"epoch": -1}, "'epoch' is a number, not a count"),
    ({"state__history": "rows"}, "'state.history' is a string, not a list"),
    ({"state__best_value": "high"}, "'state.best_value' is a string, not a number or null"),
])
def test_a_malformed_entry_is_named_and_nothing_is_loaded(tk, run, changes, expected):
    assert expected in resume_with(tk, run, altered(run[2], **changes))


def test_a_callback_state_its_callback_refuses_names_the_callback(tk, run):
    payload = copy.deepcopy(run[2])
    assert "callbacks[1]:early_stopping" in payload["callbacks"]
    payload["callbacks"]["callbacks[1]:early_stopping"] = {"nothing": 1}
    line = resume_with(tk, run, payload)
    assert "the state of callbacks[1]:early_stopping does not load: KeyError" in line


def test_a_model_of_another_shape_is_named(tk, run):
    payload = copy.deepcopy(run[2])
    payload["model"]["0.weight"] = torch.zeros(3, 3)
    assert "was not written by a run of this spec" in resume_with(tk, run, payload)


def test_an_intact_checkpoint_still_resumes(tk, run):
    path, run_dir, payload = run
    torch.save(payload, run_dir / "checkpoints" / "last.pt")
    result = tk("train", path, "--resume", run_dir, "--set", "trainer.epochs=2", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["epochs_run"] == 2


# -- model.params.weights --------------------------------------------------------------------


def train_with_weights(small_spec, weights):
    small_spec["trainer"]["epochs"] = 1
    small_spec["model"]["params"]["weights"] = str(weights)
    with pytest.raises(UserInputError) as raised:
        torchtk.train(small_spec)
    message = str(raised.value)
    assert message.startswith("model") and str(weights) in message and "failed in epoch" not in message
    return message


def test_a_pickled_object_as_weights_is_refused_and_never_runs(small_spec, tmp_path):
    marker, weights = tmp_path / "code-ran", tmp_path / "weights.pt"
    torch.save({"0.weight": CreatesAFile(marker)}, weights)
    message = train_with_weights(small_spec, weights)
    assert "holds a pickled Python object (io.open), which torchtk never loads" in message and not marker.exists()


@pytest.mark.parametrize(("content", "expected"), [
    ([torch.zeros(2)], "holds list, not a state_dict of tensors"),
    (torch.zeros(2), "holds Tensor, not a state_dict of tensors"),
    ({"model": {"0.weight": 1}}, "holds a mapping with keys ['model']"),
    ({"other.weight": torch.zeros(2)}, "does not fit the model: "),
])
def test_malformed_weights_are_an_input_error_naming_the_file(small_spec, tmp_path, content, expected):
    weights = tmp_path / "weights.pt"
    torch.save(content, weights)
    assert expected in train_with_weights(small_spec, weights)


def test_a_run_checkpoint_with_a_pickled_object_is_refused_by_tk_as_weights_too(tk, small_spec, spec_file, tmp_path):
    marker, weights = tmp_path / "code-ran", tmp_path / "best.pt"
    torch.save({"version": 2, "model": {"0.weight": torch.zeros(1)}, "spec": CreatesAFile(marker)}, weights)
    small_spec["model"]["params"]["weights"] = str(weights)
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 2 and "pickled Python object" in result.stderr and not marker.exists()
    assert json.dumps(result.stderr).count("error:") == 1
