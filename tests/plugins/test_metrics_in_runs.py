"""Metrics in a run: per-class columns named after the dataset's classes, train_<name>
columns only when asked, confusion_matrix.png for the best epoch, and the messages of
a metric that does not fit the model's output."""

from __future__ import annotations

import json

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.testing import registry_with

CLASSES = ["cat", "dog", "eel"]


class Blobs(torch.utils.data.TensorDataset):
    classes = CLASSES


class BlobsPlugin:
    """Three Gaussian blobs in the plane, with class names."""

    __name__ = "test_blobs"

    @hookimpl
    def register_components(self, register):
        register(Component("dataset", "blobs", "Three labelled blobs.", params=NoParams))

    @hookimpl
    def make_dataset(self, name, params):
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(300) % 3
        centres = torch.tensor([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
        return Blobs(centres[labels] + torch.randn(300, 2, generator=g) * 1.2, labels)


def blobs_spec(tmp_path, metrics, **trainer):
    return {
        "name": "blobs", "seed": 0,
        "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [8], "out_features": 3}},
        "data": {"name": "blobs", "batch_size": 50, "val_split": 0.3},
        "loss": "cross_entropy", "optimizer": {"name": "adam", "params": {"lr": 0.05}},
        "metrics": metrics,
        "trainer": {"epochs": 3, "device": "cpu", "output_dir": str(tmp_path / "runs"), "progress": False, **trainer},
    }


def train(spec):
    return torchtk.train(spec, registry=registry_with(BlobsPlugin()))


def test_per_class_f1_is_logged_per_class_name_and_can_be_monitored(tmp_path):
    f1 = {"name": "f1", "params": {"task": "multiclass", "num_classes": 3, "average": "none"}}
    result = train(blobs_spec(tmp_path, ["accuracy", f1], monitor="val_f1/dog", mode="max"))
    row = result.history[-1]
    assert {"val_accuracy", "val_f1/cat", "val_f1/dog", "val_f1/eel"} <= set(row) and "val_f1" not in row
    assert all(0 <= row[f"val_f1/{name}"] <= 1 for name in CLASSES)
    assert result.best["val_f1/dog"] == max(r["val_f1/dog"] for r in result.history)
    header = (result.run_dir / "history.csv").read_text().splitlines()[0]
    assert "val_f1/cat,val_f1/dog,val_f1/eel" in header


def test_train_columns_only_when_asked(tmp_path):
    metrics = [{"name": "accuracy", "train": True}, {"name": "f1", "params": {"task": "multiclass", "num_classes": 3}},
               {"name": "precision", "train": True, "params": {"task": "multiclass", "num_classes": 3}}]
    result = train(blobs_spec(tmp_path, metrics))
    columns = set(result.history[0])
    assert {"train_accuracy", "train_precision", "val_accuracy", "val_f1", "val_precision"} <= columns
    assert "train_f1" not in columns
    assert not any(c.startswith("train_") for c in set(train(blobs_spec(tmp_path, ["accuracy"])).history[0])
                   - {"train_loss"})


def test_train_accuracy_is_the_accuracy_of_the_training_batches(tmp_path):
    """With an lr far below float32 resolution the weights never change: train_accuracy
    equals the accuracy of the saved model on the whole (unsplit) training set."""
    spec = blobs_spec(tmp_path, [{"name": "accuracy", "train": True}], epochs=1, monitor="train_accuracy",
                      mode="max")
    spec["optimizer"] = {"name": "sgd", "params": {"lr": 1e-30}}
    spec["data"]["val_split"] = 0.0
    run = train(spec)
    net = torchtk.registry.create("model", "mlp", in_features=2, hidden=[8], out_features=3)
    net.load_state_dict(torch.load(run.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    inputs, labels = BlobsPlugin().make_dataset("blobs", None).tensors
    with torch.no_grad():
        expected = (net(inputs).argmax(1) == labels).double().mean().item()
    assert run.history[0]["train_accuracy"] == pytest.approx(expected)
    assert "val_accuracy" not in run.history[0]


def test_confusion_matrix_png_and_json_are_written_for_the_best_epoch(tmp_path):
    cm = {"name": "confusion_matrix", "params": {"task": "multiclass", "num_classes": 3}}
    spec = blobs_spec(tmp_path, ["accuracy", cm], epochs=4, monitor="val_accuracy", mode="max")
    result = train(spec)
    assert not any(key.startswith("val_confusion") for key in result.history[0])  # no column
    data = json.loads((result.run_dir / "confusion_matrix.json").read_text())
    assert data["epoch"] == result.best["epoch"] and data["labels"] == CLASSES
    matrix = torch.tensor(data["matrix"])
    assert matrix.shape == (3, 3) and int(matrix.sum()) == 90  # every validation sample, once
    assert matrix.diagonal().sum() / 90 == pytest.approx(result.best["val_accuracy"])
    png = (result.run_dir / "confusion_matrix.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_follows_the_best_epoch_not_the_last(tmp_path):
    """A monitor that peaks at epoch 1 (val_loss with a huge lr): the files stay epoch 1's."""
    cm = {"name": "confusion_matrix", "params": {"task": "multiclass", "num_classes": 3}}
    spec = blobs_spec(tmp_path, [cm], epochs=3, monitor="val_loss", mode="max")
    result = train(spec)
    data = json.loads((result.run_dir / "confusion_matrix.json").read_text())
    assert data["epoch"] == result.best["epoch"] == max(result.history, key=lambda r: r["val_loss"])["epoch"]


@pytest.mark.parametrize("metric, message", [
    ("f1", "metrics[1] (f1): the model outputs 3 columns but f1 defaults to task: binary; "
           "set task: multiclass and num_classes: 3"),
    ({"name": "recall", "params": {"task": "multiclass", "num_classes": 4}},
     "metrics[1] (recall): the model outputs 3 columns but num_classes is 4; set num_classes: 3"),
    ({"name": "auroc", "params": {"task": "multilabel", "num_labels": 2}},
     "metrics[1] (auroc): the model outputs 3 columns but num_labels is 2; set num_labels: 3"),
    ({"name": "iou"}, "metrics[1] (iou): the model outputs shape (4, 3) but iou has num_classes: 1; it needs masks"),
    ({"name": "mse"}, "metrics[1] (mse): the model outputs (4, 3) but the targets have shape (4); "
                      "mse compares one output with one target"),
])
def test_a_metric_that_does_not_fit_names_the_param_to_change(tk, tmp_path, metric, message):
    spec = blobs_spec(tmp_path, ["accuracy", metric])
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    from torchtk.core.registry import set_registry

    set_registry(registry_with(BlobsPlugin()))
    result = tk("train", path)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr and "torchmetrics" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_targets_beyond_num_classes_name_the_param():
    metric = torchtk.registry.create("metric", "precision", task="multiclass", num_classes=3)
    with pytest.raises(torchtk.TorchtkError, match=r"the targets hold class 5 but num_classes is 3 "
                                                   r"\(classes 0..2\); set num_classes: 6"):
        metric.update(torch.randn(2, 3), torch.tensor([0, 5]))


def test_validate_accepts_a_per_class_monitor_and_train_columns(tk, tmp_path):
    f1 = {"name": "f1", "train": True, "params": {"task": "multiclass", "num_classes": 3, "average": "none"}}
    spec = blobs_spec(tmp_path, [f1], monitor="val_f1/dog", mode="max")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    from torchtk.core.registry import set_registry

    set_registry(registry_with(BlobsPlugin()))
    assert tk("validate", path).exit_code == 0
    spec["trainer"]["monitor"] = "train_f1"
    spec["metrics"][0]["params"]["average"] = "macro"
    path.write_text(json.dumps(spec))
    assert tk("validate", path).exit_code == 0
    spec["metrics"][0]["train"] = False
    path.write_text(json.dumps(spec))
    result = tk("validate", path)
    assert result.exit_code == 2 and "'train_f1' is not logged by this run" in result.stderr


def test_validate_rejects_the_plain_column_of_a_per_class_metric(tk, tmp_path):
    """With average: none there is no val_f1 column: tk validate says so, as tk train would."""
    f1 = {"name": "f1", "params": {"task": "multiclass", "num_classes": 3, "average": "none"}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(blobs_spec(tmp_path, [f1], monitor="val_f1", mode="max")))
    from torchtk.core.registry import set_registry

    set_registry(registry_with(BlobsPlugin()))
    result = tk("validate", path)
    assert result.exit_code == 2 and "trainer.monitor: 'val_f1' is not logged by this run" in result.stderr
    assert "Traceback" not in result.stderr
