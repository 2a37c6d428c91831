"""The dev-run switches of ``trainer``: fast_dev_run, limit_train/val_batches,
overfit_batches and val_every_n_epochs, on both data paths (in-memory TensorBatches and
a DataLoader), counted by a model that records every batch it sees."""

from __future__ import annotations

import csv
import glob
import json
import os
import tempfile
import types

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.core.data import LimitedBatches, TensorBatches
from torchtk.core.engine import Run
from torchtk.core.errors import UserInputError
from torchtk.core.progress import Reporter
from torchtk.testing import registry_with

SAMPLES = 200  # val_split 0.25, batch_size 20: 150 training samples (8 batches), 50 for validation (3 batches)


class RecordingNet(torch.nn.Module):
    """A small net whose input's first feature is the sample's id; it records the ids of
    every batch it sees, and whether it was training."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        self.seen: list[tuple[bool, tuple[int, ...]]] = []

    def forward(self, x):
        self.seen.append((self.training, tuple(int(i) for i in x[:, 0].round().tolist())))
        return self.net(x / SAMPLES)

    def batches(self, training: bool) -> list[tuple[int, ...]]:
        """The batches seen in train (or eval) mode, after the probe (one eval pass of 4 samples)."""
        assert not self.seen[0][0] and len(self.seen[0][1]) == 4  # the probe before training
        return [ids for mode, ids in self.seen[1:] if mode is training]


class Listed(torch.utils.data.Dataset):
    """The same samples as a map-style dataset, so batches go through a DataLoader."""

    def __init__(self, tensors) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)


def samples():
    generator = torch.Generator().manual_seed(0)
    x = torch.stack([torch.arange(SAMPLES, dtype=torch.float32), torch.randn(SAMPLES, generator=generator)], 1)
    return [x, (x[:, 1:] > 0).float()]


def plugin(built: list) -> types.ModuleType:
    module = types.ModuleType("test_dev_run_plugin")

    @hookimpl
    def register_components(register):
        register(Component("model", "recording", "Records the batches it sees.", params=NoParams))
        register(Component("dataset", "ids_in_memory", "Samples with ids, a TensorDataset.", params=NoParams))
        register(Component("dataset", "ids_loader", "Samples with ids, through a DataLoader.", params=NoParams))

    @hookimpl
    def make_model(name, params):
        built.append(RecordingNet())
        return built[-1]

    @hookimpl
    def make_dataset(name, params):
        tensors = samples()
        return torch.utils.data.TensorDataset(*tensors) if name == "ids_in_memory" else Listed(tensors)

    for hook in (register_components, make_model, make_dataset):
        setattr(module, hook.__name__, hook)
    return module


@pytest.fixture
def built():
    return []


@pytest.fixture
def registry(built):
    return registry_with(plugin(built))


def dev_spec(tmp_path, data="ids_in_memory", **trainer):
    return {"name": "dev", "model": "recording", "loss": "bce_with_logits",
            "data": {"name": data, "batch_size": 20, "val_split": 0.25},
            "optimizer": {"name": "sgd", "params": {"lr": 1e-30}},  # far below float32 resolution: nothing moves
            "trainer": {"epochs": 3, "device": "cpu", "output_dir": str(tmp_path / "runs"), "progress": False,
                        **trainer}}


DATA_PATHS = pytest.mark.parametrize("data", ["ids_in_memory", "ids_loader"])


def read_history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def dev_dirs():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "torchtk-*-dev-*")))


# -- fast_dev_run -----------------------------------------------------------------------------


@DATA_PATHS
def test_fast_dev_run_runs_one_train_and_one_val_batch_and_keeps_nothing(tmp_path, registry, built, data):
    before = dev_dirs()
    result = torchtk.train(dev_spec(tmp_path, data, fast_dev_run=True, epochs=5), registry=registry)
    model = built[-1]
    assert len(model.batches(training=True)) == 1 and len(model.batches(training=False)) == 1
    assert [row["epoch"] for row in result.history] == [1] and "val_loss" in result.history[0]
    assert result.fast_dev_run == 1 and result.kept is False
    assert not (tmp_path / "runs").exists() and not result.run_dir.exists()  # nothing written, nothing left
    assert dev_dirs() == before


def test_fast_dev_run_n_runs_n_batches_and_keep_dev_run_keeps_the_run_directory(tmp_path, registry, built):
    result = torchtk.train(dev_spec(tmp_path, fast_dev_run=2, keep_dev_run=True), registry=registry)
    model = built[-1]
    assert len(model.batches(training=True)) == 2 and len(model.batches(training=False)) == 2
    assert result.kept and result.run_dir.parent == tmp_path / "runs"
    assert len(read_history(result.run_dir)) == 1 and (result.run_dir / "checkpoints" / "last.pt").is_file()


def test_tk_train_fast_dev_run_says_what_ran_and_that_nothing_was_kept(tk, tmp_path, spec_file, small_spec):
    result = tk("train", spec_file(small_spec), "--set", "trainer.fast_dev_run=true")
    assert result.exit_code == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("fast_dev_run: 1 epoch of 1 batch of train and val ran") and "nothing was kept" in last
    assert not (tmp_path / "runs").exists()


def test_fast_dev_run_does_not_resume(small_spec, tmp_path):
    run = torchtk.train(small_spec, overrides=["trainer.epochs=1"])
    with pytest.raises(UserInputError, match="trainer.fast_dev_run"):
        torchtk.train(small_spec, overrides=["trainer.fast_dev_run=true"], resume=run.run_dir)


# -- limit_train_batches / limit_val_batches --------------------------------------------------


@DATA_PATHS
@pytest.mark.parametrize("limits, counts", [((3, 2), (3, 2)), ((0.5, 0.5), (4, 1)), ((100, 1.0), (8, 3))])
def test_limits_cut_the_batches_of_every_epoch(tmp_path, registry, built, data, limits, counts):
    spec = dev_spec(tmp_path, data, epochs=2, limit_train_batches=limits[0], limit_val_batches=limits[1])
    torchtk.train(spec, registry=registry)
    model = built[-1]
    assert len(model.batches(training=True)) == 2 * counts[0]
    assert len(model.batches(training=False)) == 2 * counts[1]


@DATA_PATHS
def test_a_per_update_scheduler_and_tk_plan_see_the_limited_epoch(tmp_path, registry, data):
    from torchtk.core.plan import compute_plan

    spec = dev_spec(tmp_path, data, epochs=2, limit_train_batches=3, accumulate_grad_batches=2)
    spec["scheduler"] = {"name": "one_cycle", "params": {"max_lr": 0.1}}
    run = Run(torchtk.load_spec(spec, registry=registry), registry, Reporter(), None)
    assert isinstance(run.parts.train, TensorBatches if data == "ids_in_memory" else LimitedBatches)
    assert (run.info.batches_per_epoch, run.info.steps_per_epoch) == (3, 2)
    assert run.schedulers[0].scheduler.total_steps == 4
    run.fit()
    assert run.state.step == 4  # one_cycle stepped exactly its length: no "stepped too many times"
    assert len(compute_plan(spec, registry=registry).updates) == 4


def test_a_fraction_that_keeps_no_batch_is_an_input_error(tmp_path, registry):
    with pytest.raises(UserInputError, match=r"trainer.limit_val_batches: 0.1 of 3 batches is no batch; "
                                             r"give at least 0.3333"):
        torchtk.train(dev_spec(tmp_path, limit_val_batches=0.1), registry=registry)
    assert not (tmp_path / "runs").exists()


# -- overfit_batches --------------------------------------------------------------------------


@DATA_PATHS
def test_overfit_batches_trains_on_the_same_first_batches_and_validates_on_them(tmp_path, registry, built, data):
    spec = dev_spec(tmp_path, data, overfit_batches=2, limit_train_batches=5)  # overfit overrides the limits
    spec["data"]["shuffle"] = True
    torchtk.train(spec, registry=registry)
    model = built[-1]
    train, val = model.batches(training=True), model.batches(training=False)
    assert len(train) == 6 and train == train[:2] * 3  # the same two batches, in the same order, every epoch
    assert val == train
    order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(0))[50:]  # the training split
    assert train[0] + train[1] == tuple(order[:40].tolist())  # its first two batches, unshuffled


def test_overfit_batches_validates_even_without_a_validation_split(tmp_path, registry, built):
    from torchtk.core.assembly import check_without_data
    from torchtk.core.spec import load_resolved

    spec = dev_spec(tmp_path, overfit_batches=1)
    spec["data"]["val_split"] = 0  # the default monitor val_loss is logged all the same
    check_without_data(load_resolved(spec, registry=registry))  # tk validate agrees
    result = torchtk.train(spec, registry=registry)
    assert all("val_loss" in row for row in result.history)
    assert built[-1].batches(training=False) == built[-1].batches(training=True)


def test_overfit_batches_lets_the_rings_model_overfit_one_batch(small_spec):
    small_spec.update(callbacks=[], scheduler=[], metrics=[])
    small_spec["trainer"].update(overfit_batches=1, epochs=40)
    history = torchtk.train(small_spec).history
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_loss"] == pytest.approx(history[-1]["train_loss"], rel=0.5)


# -- val_every_n_epochs -----------------------------------------------------------------------


def test_val_every_n_epochs_validates_every_nth_and_the_last_epoch(tmp_path, registry, built):
    spec = dev_spec(tmp_path, epochs=5, val_every_n_epochs=2)
    spec["optimizer"]["params"]["lr"] = 0.05
    result = torchtk.train(spec, registry=registry)
    assert [row["epoch"] for row in result.history if "val_loss" in row] == [2, 4, 5]
    assert len(built[-1].batches(training=False)) == 3 * 3
    rows = read_history(result.run_dir)
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "lr"]  # the column order of a full row
    assert [bool(row["val_loss"]) for row in rows] == [False, True, False, True, True]  # empty cells
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert metrics["best"]["epoch"] in (2, 4, 5) and best["epoch"] == metrics["best"]["epoch"]


def test_early_stopping_counts_validated_epochs_only(tmp_path, registry):
    spec = dev_spec(tmp_path, epochs=20, val_every_n_epochs=2)  # lr 1e-30: val_loss never improves after epoch 2
    spec["callbacks"] = [{"name": "early_stopping", "params": {"patience": 2}},
                         {"name": "checkpoint", "params": {"save_top_k": -1}}]
    result = torchtk.train(spec, registry=registry)
    assert result.stopped_early and [row["epoch"] for row in result.history][-1] == 6  # 2 improves; 4, 6 do not
    kept = json.loads((result.run_dir / "metrics.json").read_text())["checkpoints"]
    assert sorted(entry["epoch"] for entry in kept) == [2, 4, 6]
    assert json.loads((result.run_dir / "metrics.json").read_text())["best"]["epoch"] == 2


def test_reduce_on_plateau_steps_on_validated_epochs_only(tmp_path, registry):
    from torchtk.core.plan import compute_plan

    spec = dev_spec(tmp_path, epochs=7, val_every_n_epochs=3)
    spec["scheduler"] = [{"name": "step", "params": {"step_size": 1, "gamma": 0.5}},
                         {"name": "reduce_on_plateau", "params": {"patience": 0}}]
    run = Run(torchtk.load_spec(spec, registry=registry), registry, Reporter(), None)
    run.fit()
    assert run.schedulers[0].scheduler.last_epoch == 7  # a scheduler without a metric steps every epoch
    assert run.schedulers[1].scheduler.last_epoch == 3  # epochs 3, 6 and 7
    assert compute_plan(spec, registry=registry).run.val_every_n_epochs == 3


def test_a_train_monitor_is_decided_on_every_epoch(tmp_path, registry):
    spec = dev_spec(tmp_path, epochs=6, val_every_n_epochs=3, monitor="train_loss")
    spec["data"]["shuffle"] = False  # the same train_loss, to the bit, every epoch
    spec["callbacks"] = [{"name": "early_stopping", "params": {"monitor": "train_loss", "patience": 1}}]
    result = torchtk.train(spec, registry=registry)
    assert result.stopped_early and len(result.history) < 3  # decided before the first validated epoch


# -- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, message", [
    ("limit_train_batches=0", "trainer.limit_train_batches: give a number of batches >= 1 or a fraction in (0, 1]"),
    ("limit_train_batches=1.5", "trainer.limit_train_batches: give a number of batches >= 1"),
    ("limit_val_batches=0", "trainer.limit_val_batches: give a number of batches >= 1 or a fraction in (0, 1] "
                            "(no validation at all: data.val_split 0)"),
    ("limit_val_batches=true", "trainer.limit_val_batches: give a number of batches"),
    ("overfit_batches=-1", "trainer.overfit_batches: give a number of batches >= 1, a fraction in (0, 1], or 0"),
    ("fast_dev_run=0", "trainer.fast_dev_run: give true (one batch), a number of batches >= 1, or false"),
    ("fast_dev_run=0.5", "trainer.fast_dev_run"),
    ("val_every_n_epochs=0", "trainer.val_every_n_epochs: Input should be greater than or equal to 1"),
])
def test_bad_values_are_input_errors_naming_the_spec_path(tk, spec_file, setting, message):
    result = tk("train", spec_file(), "--set", f"trainer.{setting}")
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_switches_are_in_the_schema_with_descriptions():
    from torchtk.core.spec.models import TrainerSpec

    schema = TrainerSpec.model_json_schema()["properties"]
    for name in ("fast_dev_run", "keep_dev_run", "limit_train_batches", "limit_val_batches", "overfit_batches",
                 "val_every_n_epochs"):
        assert schema[name]["description"], name


# -- resume -----------------------------------------------------------------------------------


def test_a_checkpoint_from_before_the_switches_resumes_and_a_changed_limit_is_refused(small_spec):
    run = torchtk.train(small_spec, overrides=["trainer.epochs=1"])
    path = run.run_dir / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    for name in ("fast_dev_run", "limit_train_batches", "limit_val_batches", "overfit_batches"):
        del payload["spec"]["trainer"][name]  # as in a checkpoint written before they existed
    torch.save(payload, path)
    with pytest.raises(UserInputError, match="trainer.limit_train_batches"):
        torchtk.train(small_spec, overrides=["trainer.epochs=2", "trainer.limit_train_batches=1"], resume=run.run_dir)
    resumed = torchtk.train(small_spec, overrides=["trainer.epochs=3", "trainer.val_every_n_epochs=2"],
                            resume=run.run_dir)
    assert [("val_loss" in row) for row in resumed.history] == [True, True, True]  # epochs 1 (then: every), 2, 3
