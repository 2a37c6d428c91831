"""``tensorboard``: event files read back with TensorBoard's own EventAccumulator hold every
scalar of each epoch's row (and per-update ones when asked); the writer is closed at the
end and on a failure; without the tensorboard package the run stops before training with
the install hint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import torchtk
from torchtk import hookimpl
from torchtk.plugins.callbacks import tensorboard as tb_callback
from torchtk.testing import check_plugin, registry_with

from tests.core.test_engine import one_component_plugin


def scalars(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture
def tensorboard_spec(small_spec):
    pytest.importorskip("tensorboard")
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 20, "log_norm": True}},
                               {"name": "tensorboard", "params": {"log_steps": True}}]
    small_spec["trainer"]["log_every_n_steps"] = 4  # 12 batches per epoch: logged after batches 4, 8, 12
    return small_spec


def test_every_scalar_of_each_epoch_row_is_in_the_event_files(tensorboard_spec):
    result = torchtk.train(tensorboard_spec)
    found = scalars(result.run_dir / "tensorboard")
    columns = set(result.history[0])
    assert {"train_loss", "train_loss/focal", "train_loss/l2_regularization", "val_loss", "val_accuracy", "lr",
            "grad_norm", "epoch"} <= columns
    assert columns <= set(found)
    for column in columns:
        assert [step for step, _ in found[column]] == [12, 24, 36], column  # against the optimizer step
        assert [value for _, value in found[column]] == pytest.approx(
            [row[column] for row in result.history], rel=1e-6), column  # stored as float32


def test_per_update_scalars_at_the_logging_interval(tensorboard_spec):
    result = torchtk.train(tensorboard_spec)
    found = scalars(result.run_dir / "tensorboard")
    assert [step for step, _ in found["step/loss"]] == [4, 8, 12, 16, 20, 24, 28, 32, 36]
    assert [step for step, _ in found["step/grad_norm"]] == [4, 8, 12, 16, 20, 24, 28, 32, 36]
    lrs = [value for _, value in found["step/lr"]]
    assert lrs[:6] == pytest.approx([0.01] * 6) and lrs[6:] == pytest.approx([0.005] * 3)  # step: gamma 0.5 after 2


def test_no_per_update_scalars_unless_asked(tensorboard_spec):
    tensorboard_spec["callbacks"][1] = "tensorboard"
    found = scalars(torchtk.train(tensorboard_spec).run_dir / "tensorboard")
    assert not [tag for tag in found if tag.startswith("step/")] and "val_loss" in found


def test_a_log_dir_gets_one_subdirectory_per_run(tensorboard_spec, tmp_path):
    tensorboard_spec["callbacks"] = [{"name": "tensorboard", "params": {"log_dir": str(tmp_path / "tb")}}]
    first, second = torchtk.train(tensorboard_spec), torchtk.train(tensorboard_spec)
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted([first.run_dir.name, second.run_dir.name])
    assert "val_loss" in scalars(tmp_path / "tb" / first.run_dir.name)
    assert not (first.run_dir / "tensorboard").exists()


class Failing:
    @hookimpl
    def on_epoch_end(self, state):
        if state.epoch == 2:
            raise RuntimeError("boom")


@pytest.mark.parametrize("fails", [False, True])
def test_the_writer_is_closed_at_the_end_and_on_a_failure(tensorboard_spec, monkeypatch, fails):
    closed = []
    real = tb_callback.summary_writer_class()

    class Recording(real):
        def close(self):
            closed.append(self.log_dir)
            super().close()

    monkeypatch.setattr(tb_callback, "summary_writer_class", lambda: Recording)
    tensorboard_spec["callbacks"] = ["tensorboard", "failing"]
    registry = registry_with(one_component_plugin("callback", "failing", Failing))
    if fails:
        with pytest.raises(torchtk.TorchtkError, match="boom"):
            torchtk.train(tensorboard_spec, registry=registry)
    else:
        tensorboard_spec["callbacks"] = ["tensorboard"]
        torchtk.train(tensorboard_spec, registry=registry)
    assert len(closed) == 1 and closed[0].endswith("tensorboard")
    assert "epoch" in scalars(closed[0])  # what was written before the failure is on disk


def test_without_the_tensorboard_package_the_run_stops_before_training(tk, small_spec, spec_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    small_spec["callbacks"] = ["tensorboard"]
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: callbacks[0]: building callback 'tensorboard' failed: ")
    assert "pip install 'torchtk[tensorboard]'" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(Path(small_spec["trainer"]["output_dir"]).glob("*/checkpoints/*.pt")), "nothing was trained"


def test_listed_and_conforming(tk):
    assert "tensorboard" in tk("list", "callbacks").stdout
    shown = tk("show", "callback", "tensorboard").stdout
    assert "log_dir" in shown and "log_steps" in shown and "torchtk[tensorboard]" in shown
    assert check_plugin(torchtk.registry, "torchtk.plugins.callbacks") == []


def test_a_resumed_run_purges_what_the_interrupted_one_wrote_after_its_checkpoint(tensorboard_spec):
    tensorboard_spec["trainer"]["epochs"] = 2
    first = torchtk.train(tensorboard_spec)
    # event files are named events.out.tfevents.<second>.<host>.<pid>.<counter> and read in name order:
    # three writers of one process in one second sort by a counter as text ("10" before "9" once a
    # long test session passed 9 writers), so each writer here starts in a second of its own
    time.sleep(1.05)
    writer = tb_callback.summary_writer_class()(log_dir=str(first.run_dir / "tensorboard"))
    writer.add_scalar("val_loss", 999.0, 30)  # what an interrupted epoch 3 had written, after step 24
    writer.close()
    time.sleep(1.05)
    tensorboard_spec["trainer"]["epochs"] = 3
    resumed = torchtk.train(tensorboard_spec, resume=first.run_dir)
    found = scalars(first.run_dir / "tensorboard")
    assert [step for step, _ in found["val_loss"]] == [12, 24, 36]
    assert [value for _, value in found["val_loss"]] == pytest.approx([r["val_loss"] for r in resumed.history])
    assert [step for step, _ in found["step/loss"]] == [4, 8, 12, 16, 20, 24, 28, 32, 36]
