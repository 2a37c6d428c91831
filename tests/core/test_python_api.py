"""The Python API (issue 9, item 7): torchtk.train's progress choice (one decision shared
with tk train), and what RunResult hands back: the trained model and the checkpoints."""

from __future__ import annotations

import pytest
import torch

import torchtk
from torchtk.core import progress_choice
from torchtk.core.errors import UserInputError
from torchtk.core.progress import PlainReporter, Reporter, RichReporter
from torchtk.core.progress_choice import choose_reporter
from torchtk.testing import registry_with

from tests.core.test_engine import Sequence, one_component_plugin


class Recorder(Reporter):
    def __init__(self):
        self.rows, self.started = [], None

    def start(self, run_dir, epochs, batches, first_epoch=1, **details):  # details: setup, batch_size, ...
        self.started = (epochs, batches)

    def epoch_end(self, row, **details):
        self.rows.append(row)


# -- progress ------------------------------------------------------------------------------------


def test_auto_outside_a_terminal_or_notebook_is_silent(small_spec, capsys):
    result = torchtk.train(small_spec)
    assert len(result.history) == 3
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_plain_prints_one_line_per_epoch(small_spec, capsys):
    result = torchtk.train(small_spec, progress="plain")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run directory: {result.run_dir}  (cpu, fp32)"
    assert [line.split()[:2] for line in lines if line.startswith("epoch ")] == [
        ["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    assert "val_accuracy=" in lines[-1]


def test_a_reporter_instance_is_used_as_given_and_reporter_keeps_working(small_spec):
    recorder = Recorder()
    result = torchtk.train(small_spec, progress=recorder)
    assert recorder.started == (3, 12) and recorder.rows == result.history  # 600 samples in batches of 50
    older = Recorder()
    torchtk.train(small_spec, reporter=older)  # the keyword of torchtk 0.1
    assert len(older.rows) == 3


@pytest.mark.parametrize("value,expected", [
    (True, RichReporter), ("rich", RichReporter), ("plain", PlainReporter), (False, Reporter), (None, Reporter)])
def test_explicit_choices(value, expected):
    assert type(choose_reporter(value)) is expected


def test_auto_shows_the_bar_in_a_terminal_or_a_notebook(monkeypatch):
    monkeypatch.setattr(progress_choice, "interactive", lambda: False)
    assert type(choose_reporter("auto")) is Reporter
    assert type(choose_reporter("auto", otherwise="plain")) is PlainReporter
    monkeypatch.setattr(progress_choice, "interactive", lambda: True)
    assert type(choose_reporter("auto")) is RichReporter


def test_a_jupyter_notebook_counts_as_interactive(monkeypatch):
    import rich.console

    assert progress_choice.interactive() is False  # pytest captures stdout: no terminal
    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)  # what Console().is_jupyter reads
    assert progress_choice.interactive() is True


def test_an_unknown_progress_value_is_an_input_error(small_spec):
    with pytest.raises(UserInputError, match=r"progress='bar': choose 'auto', True or 'rich', 'plain'"):
        torchtk.train(small_spec, progress="bar")


def test_tk_train_chooses_through_the_same_function(tk, spec_file, monkeypatch):
    calls = []
    real = progress_choice.choose_reporter

    def spy(progress="auto", otherwise="silent"):
        if not isinstance(progress, Reporter):  # the engine passes the CLI's choice through
            calls.append((progress, otherwise))
        return real(progress, otherwise)

    monkeypatch.setattr(progress_choice, "choose_reporter", spy)
    path = spec_file()
    assert tk("train", path).exit_code == 0
    assert tk("train", path, "--json").exit_code == 0
    assert calls == [("auto", "plain"), (False, "plain")]


# -- RunResult -----------------------------------------------------------------------------------


def test_result_model_is_the_trained_module_with_the_best_weights_restored(small_spec):
    small_spec["optimizer"]["params"]["lr"] = 0.3  # noisy: the best epoch is not the last one
    small_spec["callbacks"] = [{"name": "early_stopping", "params": {"patience": 2, "restore_best": True}}]
    small_spec["trainer"]["epochs"] = 30
    result = torchtk.train(small_spec)
    assert isinstance(result.model, torch.nn.Module) and type(result.model).__name__ != "DistributedDataParallel"
    assert result.best_checkpoint == result.run_dir / "checkpoints" / "best.pt" and result.best_checkpoint.exists()
    assert result.last_checkpoint == result.run_dir / "checkpoints" / "last.pt" and result.last_checkpoint.exists()
    best = torch.load(result.best_checkpoint, weights_only=True)
    last = torch.load(result.last_checkpoint, weights_only=True)
    assert result.stopped_early and best["epoch"] == result.best["epoch"] < last["epoch"]
    weights = result.model.state_dict()
    assert all(torch.equal(weights[k], best["model"][k]) for k in weights)
    assert not all(torch.equal(weights[k], last["model"][k]) for k in weights)


def test_result_model_keeps_the_last_weights_without_restore_best(small_spec):
    result = torchtk.train(small_spec)
    last = torch.load(result.last_checkpoint, weights_only=True)["model"]
    weights = result.model.state_dict()
    assert all(torch.equal(weights[k], last[k]) for k in weights)
    x = torch.randn(5, 2)
    assert result.model(x).shape == (5, 1)  # a usable module, on the run's device


def test_no_best_checkpoint_when_no_epoch_improved(small_spec):
    small_spec["metrics"] = ["sequence"]
    small_spec["trainer"].update(monitor="val_sequence", mode="max")
    plugin = one_component_plugin("metric", "sequence", lambda: Sequence([float("nan")] * 3))
    result = torchtk.train(small_spec, registry=registry_with(plugin))
    assert result.best_checkpoint is None and not (result.run_dir / "checkpoints" / "best.pt").exists()
    assert result.last_checkpoint is not None and result.last_checkpoint.exists()


def test_no_last_checkpoint_when_a_policy_removes_it(small_spec):
    small_spec["callbacks"] = [{"name": "checkpoint", "params": {"keep_last": False}}]
    result = torchtk.train(small_spec)
    assert result.last_checkpoint is None and result.best_checkpoint.exists()


def test_trainer_progress_false_prints_epoch_lines_where_the_bar_would_be(small_spec, capsys):
    small_spec["trainer"]["progress"] = False
    torchtk.train(small_spec, progress="rich")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("epoch ")] == [
        ["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    recorder = Recorder()
    torchtk.train(small_spec, progress=recorder)  # a reporter of your own is yours to keep
    assert len(recorder.rows) == 3
