"""torchmetrics metrics behind torchtk's metric protocol (imported when a run builds one)."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torchmetrics


def column_names(count: int, classes: list[str] | None, skip_first: bool = False) -> list[str]:
    """One column suffix per class: the dataset's class names when they fit, else the index."""
    names = list(classes) if classes else []
    if skip_first and len(names) == count + 1:
        names = names[1:]
    if len(names) == count:
        return names
    start = 1 if skip_first else 0
    return [str(index) for index in range(start, start + count)]


class TorchMetric:
    """A torchmetrics metric with an input adapter: ``compute()`` is a float, or with
    ``columns`` a dict ``{column: value}`` (logged as ``val_<name>/<column>``)."""

    def __init__(self, metric: Any, inputs: Callable, columns: list[str] | None = None) -> None:
        self.metric, self.inputs, self.columns = metric, inputs, columns

    def to(self, device: Any) -> "TorchMetric":
        self.metric = self.metric.to(device)
        return self

    def reset(self) -> None:
        self.metric.reset()

    def update(self, output: Any, target: Any) -> None:
        self.metric.update(*self.inputs(output, target))

    def compute(self) -> float | dict[str, float]:
        value = self.metric.compute()
        if self.columns is None:
            return float(value)
        return dict(zip(self.columns, value.reshape(-1).tolist()))


def classification_kwargs(name: str, params: Any, task: str) -> dict[str, Any]:
    """The constructor arguments of a task-specific torchmetrics class."""
    kwargs: dict[str, Any] = {"validate_args": False, "ignore_index": params.ignore_index}
    if task == "multiclass":
        kwargs["num_classes"] = params.num_classes
    elif task == "multilabel":
        kwargs["num_labels"] = params.num_labels
    if task != "multiclass" and hasattr(params, "threshold") and name not in ("auroc", "average_precision"):
        kwargs["threshold"] = params.threshold
    average = getattr(params, "average", None)
    if average is not None and task != "binary":
        kwargs["average"] = average
    thresholds = getattr(params, "thresholds", None)
    if name in ("auroc", "average_precision"):
        kwargs["thresholds"] = thresholds
    weights = getattr(params, "weights", None)
    if name == "cohen_kappa":
        kwargs["weights"] = weights
    if getattr(params, "top_k", 1) > 1 and task == "multiclass":
        kwargs["top_k"] = params.top_k
    return kwargs


def per_class_columns(params: Any, task: str, classes: list[str] | None) -> list[str] | None:
    if getattr(params, "average", None) != "none" or task == "binary":
        return None
    return column_names(params.num_classes if task == "multiclass" else params.num_labels, classes)


def classification(name: str, cls_name: str, params: Any, classes: list[str] | None,
                   task: str | None = None) -> TorchMetric:
    """``torchmetrics.<cls_name>(task=...)`` with its input adapter."""
    from torchtk.plugins.metrics._inputs import ClassificationInputs

    task = task or params.task
    task_given = "task" in params.model_fields_set
    metric = getattr(torchmetrics, cls_name)(task=task, **classification_kwargs(name, params, task))
    return TorchMetric(metric, ClassificationInputs(name, params, task, task_given),
                       per_class_columns(params, task, classes))


def regression(name: str, params: Any) -> TorchMetric:
    from torchtk.plugins.metrics._inputs import RegressionInputs

    if name == "mse":
        return TorchMetric(torchmetrics.MeanSquaredError(squared=params.squared), RegressionInputs(name))
    if name == "mae":
        return TorchMetric(torchmetrics.MeanAbsoluteError(), RegressionInputs(name))
    return TorchMetric(torchmetrics.R2Score(adjusted=params.adjusted, multioutput=params.multioutput),
                       RegressionInputs(name, flatten=False))


class EmptyIsPerfect(TorchMetric):
    """MeanIoU is NaN when no image has foreground anywhere: 1.0 then (nothing was missed)."""

    def compute(self) -> float | dict[str, float]:
        if not self.metric.update_count:
            return 1.0 if self.columns is None else dict.fromkeys(self.columns, 1.0)
        value = self.metric.compute()
        value = torch.nan_to_num(value, nan=1.0) if self.columns is None else value
        if self.columns is None:
            return float(value)
        return dict(zip(self.columns, torch.where(value < 0, 1.0, value).reshape(-1).tolist()))


def segmentation(name: str, params: Any, classes: list[str] | None) -> TorchMetric:
    from torchmetrics.segmentation import DiceScore, MeanIoU

    from torchtk.plugins.metrics._inputs import MaskInputs

    binary = params.num_classes == 1
    # binary masks: one one-hot channel; C classes: class indices
    common = {"num_classes": params.num_classes, "include_background": True if binary else params.include_background,
              "input_format": "one-hot" if binary else "index"}
    skip = not common["include_background"]
    count = params.num_classes - (1 if skip else 0)
    columns = column_names(count, classes, skip_first=skip) if params.per_class else None
    inputs = MaskInputs(name, params)
    if name == "dice":
        metric = DiceScore(average="none" if params.per_class else "macro",
                           aggregation_level=params.aggregation_level, **common)
        return TorchMetric(metric, inputs, columns)
    return EmptyIsPerfect(MeanIoU(per_class=params.per_class, **common), inputs, columns)
