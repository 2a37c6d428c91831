"""The built-in metrics: each against torchmetrics' functional result or hand-computed
values on scripted predictions, accumulated over several batches."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest
import torch
import torchmetrics
import torchmetrics.functional as F

import torchtk
from torchtk.plugins import metrics as builtin
from torchtk.testing import check_plugin

GEN = torch.Generator().manual_seed(0)


def create(name, **params):
    return torchtk.registry.create("metric", name, **params)


def fed(metric, output, target, pieces=3):
    """``metric`` updated with ``output``/``target`` in ``pieces`` batches, then computed."""
    metric.reset()
    for out, tgt in zip(output.chunk(pieces), target.chunk(pieces)):
        metric.update(out, tgt)
    return metric.compute()


def logits(*shape):
    return torch.randn(*shape, generator=GEN) * 2


BINARY = (logits(30, 1), (torch.rand(30, 1, generator=GEN) > 0.6).float())
MULTICLASS = (logits(30, 4), torch.randint(0, 4, (30,), generator=GEN))
MULTILABEL = (logits(30, 3), (torch.rand(30, 3, generator=GEN) > 0.5).float())


def test_the_plugin_conforms_and_lists_every_metric():
    assert check_plugin(torchtk.registry, "torchtk.plugins.metrics") == []
    names = set(torchtk.registry.names("metric"))
    assert names >= {"accuracy", "precision", "recall", "f1", "auroc", "average_precision", "confusion_matrix",
                     "mse", "mae", "r2", "dice", "iou", "specificity", "matthews_corrcoef", "cohen_kappa",
                     "jaccard_index"}


def torchmetrics_class(path):
    module, _, attr = f"torchmetrics.{path}".rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_the_catalog_matches_torchmetrics():
    """Every catalog entry names a torchmetrics class that exists; for each task, every
    argument torchtk passes is one the task's own class takes, and every param of a
    classification metric reaches torchmetrics for some task (none is silently ignored)."""
    from torchtk.plugins.metrics._torchmetrics import classification_kwargs

    for name, (path, *_rest) in builtin.METRICS.items():
        assert inspect.isclass(torchmetrics_class(path)), name
    ours = {"task", "from_logits", "num_classes", "num_labels", "normalize"}
    for name in [*builtin.CLASSIFICATION, "accuracy", "confusion_matrix"]:
        path, _summary, params_model, _aliases = builtin.METRICS[name]
        passed = set()
        for task in ("binary", "multiclass", "multilabel"):
            if name == "cohen_kappa" and task == "multilabel":
                continue
            top_k = {"top_k": 2} if name == "accuracy" and task == "multiclass" else {}
            kwargs = classification_kwargs(name, params_model(task=task, num_classes=3, num_labels=3, **top_k), task)
            specific = torchmetrics_class(f"classification.{task.capitalize()}{path}")
            accepted = set(inspect.signature(specific.__init__).parameters)
            assert set(kwargs) <= accepted, (name, task, set(kwargs) - accepted)
            passed |= set(kwargs)
        unused = set(params_model.model_fields) - ours - passed
        assert unused <= ({"threshold"} if name in ("auroc", "average_precision") else set()), (name, unused)


def test_listing_and_showing_metrics_import_neither_torch_nor_torchmetrics():
    code = ("import sys\nfrom torchtk.core.cli import main\n"
            "for args in (['list', 'metrics'], ['show', 'metric', 'f1'], ['show', 'metric', 'iou']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print([m for m in ('torch', 'torchmetrics') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_show_lists_the_params_with_descriptions_and_bounds(tk):
    shown = tk("show", "metric", "f1", "--json").json()
    params = {p["name"]: p for p in shown["params"]} if isinstance(shown["params"], list) else shown["params"]
    assert {"task", "num_classes", "num_labels", "threshold", "average", "from_logits", "ignore_index"} <= set(params)
    text = tk("show", "metric", "f1").stdout
    assert "none (one column per class)" in text and "Number of classes" in text


# -- accuracy: hand-written, equal to torchmetrics' Accuracy -----------------------------------------


@pytest.mark.parametrize("task, data, extra", [
    ("binary", BINARY, {}),
    ("binary", (BINARY[0].reshape(-1), BINARY[1].reshape(-1)), {"threshold": 0.3}),
    ("multiclass", MULTICLASS, {}),
    ("multiclass", MULTICLASS, {"top_k": 2}),
    ("multilabel", MULTILABEL, {"threshold": 0.7}),
])
def test_accuracy_equals_torchmetrics_accuracy(task, data, extra):
    from torchtk.plugins.metrics._accuracy import Accuracy

    output, target = data
    size = {"num_classes": 4} if task == "multiclass" else {"num_labels": 3} if task == "multilabel" else {}
    metric = create("accuracy", task=task, **size, **extra)
    assert isinstance(metric, Accuracy)  # no torchmetrics behind the default accuracy
    probs = output.softmax(1) if task == "multiclass" else output.sigmoid()
    expected = F.accuracy(probs, target.long(), task=task, average="micro", **size, **extra)
    assert fed(metric, output, target) == pytest.approx(float(expected), abs=1e-7)
    if task != "multilabel":  # the task read from the output's columns gives the same value
        inferred = create("accuracy", **{k: v for k, v in extra.items()})
        assert fed(inferred, output, target) == pytest.approx(float(expected), abs=1e-7)


def test_accuracy_counts_scripted_predictions_and_one_hot_targets():
    metric = create("accuracy")
    metric.update(torch.tensor([[2.0], [-1.0], [3.0]]), torch.tensor([[1.0], [0.0], [0.0]]))
    assert metric.compute() == pytest.approx(2 / 3)
    scores = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    assert fed(create("accuracy"), scores, torch.eye(3)[[0, 2, 2, 1]], pieces=2) == 0.5
    assert fed(create("accuracy", task="multiclass", num_classes=3, top_k=2), scores, torch.tensor([0, 2, 2, 1]),
               pieces=2) == 0.75


def test_accuracy_macro_and_per_class_go_through_torchmetrics():
    output, target = MULTICLASS
    macro = fed(create("accuracy", task="multiclass", num_classes=4, average="macro"), output, target)
    assert macro == pytest.approx(float(F.accuracy(output, target, task="multiclass", num_classes=4,
                                                   average="macro")))
    per_class = fed(create("accuracy", task="multiclass", num_classes=4, average="none"), output, target)
    expected = F.accuracy(output, target, task="multiclass", num_classes=4, average="none")
    assert per_class == pytest.approx(dict(zip("0123", expected.tolist())))


# -- the torchmetrics classification metrics ---------------------------------------------------------

FUNCTIONAL = {"precision": F.precision, "recall": F.recall, "f1": F.f1_score, "specificity": F.specificity,
              "jaccard_index": F.jaccard_index}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
def test_thresholded_metrics_match_torchmetrics_functional(name, average):
    fn = FUNCTIONAL[name]
    output, target = BINARY
    binary = fed(create(name, threshold=0.4), output, target)
    assert binary == pytest.approx(float(fn(output.sigmoid().reshape(-1), target.reshape(-1).long(),
                                            task="binary", threshold=0.4)), abs=1e-6)
    output, target = MULTICLASS
    value = fed(create(name, task="multiclass", num_classes=4, average=average), output, target)
    assert value == pytest.approx(float(fn(output, target, task="multiclass", num_classes=4, average=average)),
                                  abs=1e-6)
    output, target = MULTILABEL
    value = fed(create(name, task="multilabel", num_labels=3, average=average), output, target)
    assert value == pytest.approx(float(fn(output.sigmoid(), target.long(), task="multilabel", num_labels=3,
                                           average=average)), abs=1e-6)


def test_per_class_f1_is_one_column_per_class_named_after_the_classes():
    output, target = MULTICLASS
    expected = F.f1_score(output, target, task="multiclass", num_classes=4, average="none").tolist()
    named = create("f1", task="multiclass", num_classes=4, average="none", classes=["a", "b", "c", "d"])
    assert named.columns == ["a", "b", "c", "d"]
    assert fed(named, output, target) == pytest.approx(dict(zip("abcd", expected)))
    indexed = create("f1", task="multiclass", num_classes=4, average="none")  # no class names: the index
    assert fed(indexed, output, target) == pytest.approx(dict(zip("0123", expected)))
    assert create("f1", task="multiclass", num_classes=4, average="none", classes=["a", "b"]).columns == list("0123")


def test_ranking_metrics_match_torchmetrics_functional():
    output, target = BINARY
    for name, fn in (("auroc", F.auroc), ("average_precision", F.average_precision)):
        expected = fn(output.sigmoid().reshape(-1), target.reshape(-1).long(), task="binary")
        assert fed(create(name), output, target) == pytest.approx(float(expected), abs=1e-6)
        mc_output, mc_target = MULTICLASS
        for average in ("macro", "weighted"):
            expected = fn(mc_output.softmax(1), mc_target, task="multiclass", num_classes=4, average=average)
            value = fed(create(name, task="multiclass", num_classes=4, average=average), mc_output, mc_target)
            assert value == pytest.approx(float(expected), abs=1e-6)
    binned = fed(create("auroc", thresholds=11), output, target)
    assert binned == pytest.approx(float(F.auroc(output.sigmoid().reshape(-1), target.reshape(-1).long(),
                                                 task="binary", thresholds=11)), abs=1e-6)


def test_agreement_metrics_match_torchmetrics_functional():
    output, target = MULTICLASS
    kappa = fed(create("cohen_kappa", task="multiclass", num_classes=4, weights="quadratic"), output, target)
    assert kappa == pytest.approx(float(F.cohen_kappa(output, target, task="multiclass", num_classes=4,
                                                      weights="quadratic")), abs=1e-6)
    mcc = fed(create("matthews_corrcoef", task="multiclass", num_classes=4), output, target)
    assert mcc == pytest.approx(float(F.matthews_corrcoef(output, target, task="multiclass", num_classes=4)),
                                abs=1e-6)


def test_probabilities_are_taken_as_they_are_with_from_logits_false():
    output, target = BINARY
    probabilities = output.sigmoid()
    assert fed(create("f1", from_logits=False), probabilities, target) == fed(create("f1"), output, target)


# -- regression and segmentation ------------------------------------------------------------------


def test_regression_metrics_equal_their_formulas():
    output = torch.tensor([[1.0], [2.0], [4.0], [0.5]])
    target = torch.tensor([1.5, 2.0, 3.0, -0.5])  # (N,) targets for an (N, 1) output
    errors = output.reshape(-1) - target
    assert fed(create("mse"), output, target, 2) == pytest.approx(float((errors ** 2).mean()))
    assert fed(create("mse", squared=False), output, target, 2) == pytest.approx(float((errors ** 2).mean().sqrt()))
    assert fed(create("mae"), output, target, 2) == pytest.approx(float(errors.abs().mean()))
    r2 = 1 - float((errors ** 2).sum() / ((target - target.mean()) ** 2).sum())
    assert fed(create("r2"), output, target, 2) == pytest.approx(r2)
    two = logits(12, 2), logits(12, 2)
    assert fed(create("r2"), *two) == pytest.approx(float(F.r2_score(*two)), abs=1e-6)


def masks():
    target = torch.zeros(2, 1, 4, 4)
    target[0, :, :2, :] = 1  # image 0: 8 foreground pixels, 12 predicted (8 right)
    target[1, :, :1, :] = 1  # image 1: 4 foreground pixels, predicted exactly
    output = torch.full((2, 1, 4, 4), -5.0)
    output[0, :, :3, :] = 5.0
    output[1, :, :1, :] = 5.0
    return output, target


def test_iou_and_dice_on_scripted_binary_masks():
    output, target = masks()
    assert fed(create("iou"), output, target, 2) == pytest.approx((8 / 12 + 1) / 2)  # mean over images
    assert fed(create("dice"), output, target, 2) == pytest.approx((2 * 8 / 20 + 1) / 2)
    assert fed(create("dice", aggregation_level="global"), output, target, 2) == pytest.approx(2 * 12 / (16 + 12))
    iou = create("iou")
    iou.update(output[:1], target[:1])
    iou.update(torch.full((1, 1, 4, 4), -5.0), torch.zeros(1, 1, 4, 4))  # empty and empty: adds nothing
    assert iou.compute() == pytest.approx(8 / 12)
    iou.reset()
    assert iou.compute() == 1.0  # nothing anywhere: nothing missed
    probabilities = create("iou", from_logits=False, threshold=0.9)
    assert fed(probabilities, output.sigmoid(), target.squeeze(1), 2) == pytest.approx((8 / 12 + 1) / 2)


def test_multiclass_segmentation_metrics_match_torchmetrics_functional():
    from torchmetrics.functional.segmentation import dice_score, mean_iou

    output, target = logits(4, 3, 8, 8), torch.randint(0, 3, (4, 8, 8), generator=GEN)
    preds = output.argmax(1)
    expected = mean_iou(preds, target, num_classes=3, input_format="index").mean()
    assert fed(create("iou", num_classes=3), output, target, 2) == pytest.approx(float(expected), abs=1e-6)
    per_class = fed(create("iou", num_classes=3, per_class=True, include_background=False), output, target, 2)
    assert list(per_class) == ["1", "2"]
    expected = dice_score(preds, target, num_classes=3, input_format="index", average="macro").mean()
    assert fed(create("dice", num_classes=3), output, target, 1) == pytest.approx(float(expected), abs=1e-6)


# -- the confusion matrix -------------------------------------------------------------------------


def test_confusion_matrix_of_a_scripted_prediction_has_the_exact_counts():
    target = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    output = torch.eye(3)[[0, 1, 1, 1, 2, 0, 2]] * 4  # predicted classes 0 1 1 1 2 0 2
    metric = create("confusion_matrix", task="multiclass", num_classes=3)
    assert metric.columns == [] and fed(metric, output, target, 2) == {}
    assert metric.matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    normalized = create("confusion_matrix", task="multiclass", num_classes=3, normalize="true")
    fed(normalized, output, target, 2)
    expected = [[0.5, 0.5, 0], [0, 1, 0], [1 / 3, 0, 2 / 3]]
    assert all(row == pytest.approx(want) for row, want in zip(normalized.matrix, expected))
    binary = create("confusion_matrix")
    fed(binary, torch.tensor([3.0, -2.0, 1.0, -1.0, 2.0]), torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]), 1)
    assert binary.matrix == [[1, 1], [1, 2]]
