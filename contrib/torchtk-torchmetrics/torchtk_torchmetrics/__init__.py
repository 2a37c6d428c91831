"""torchmetrics classification metrics as torchtk metrics.

The catalog is plain data, so ``tk list metrics`` imports neither torch nor
torchmetrics; the metric class is imported when a run builds it.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from torchtk import Component, Params, hookimpl

# name -> (torchmetrics class, one-line summary)
METRICS: dict[str, tuple[str, str]] = {
    "f1": ("F1Score", "F1 score: harmonic mean of precision and recall."),
    "precision": ("Precision", "Precision: fraction of predicted positives that are positive."),
    "recall": ("Recall", "Recall (sensitivity): fraction of positives that are found."),
    "specificity": ("Specificity", "Specificity: fraction of negatives that are predicted negative."),
    "auroc": ("AUROC", "Area under the ROC curve."),
    "average_precision": ("AveragePrecision", "Average precision: area under the precision-recall curve."),
    "matthews_corrcoef": ("MatthewsCorrCoef", "Matthews correlation coefficient, robust to class imbalance."),
    "cohen_kappa": ("CohenKappa", "Cohen's kappa: agreement corrected for chance."),
    "jaccard_index": ("JaccardIndex", "Jaccard index (IoU) of predicted and true labels."),
}
THRESHOLDED = {"f1", "precision", "recall", "specificity", "matthews_corrcoef", "cohen_kappa", "jaccard_index"}
AVERAGED = THRESHOLDED - {"matthews_corrcoef", "cohen_kappa"} | {"auroc", "average_precision"}


class MetricParams(Params):
    """A torchmetrics classification metric.

    ``binary``: outputs are logits (or probabilities) of shape ``(N,)`` or ``(N, 1)``,
    targets 0/1 of the same size. ``multiclass``: ``(N, C)`` logits and integer class
    targets ``(N,)``; ``num_classes`` is required. ``multilabel``: ``(N, L)`` logits and
    0/1 targets ``(N, L)``; ``num_labels`` is required.
    """

    task: Literal["binary", "multiclass", "multilabel"] = Field("binary", description="Kind of classification.")
    num_classes: Optional[int] = Field(None, ge=2, description="Number of classes (multiclass).")
    num_labels: Optional[int] = Field(None, ge=1, description="Number of labels (multilabel).")
    threshold: float = Field(0.5, ge=0, le=1, description="Probability above which a binary/multilabel output is 1.")
    average: Literal["micro", "macro", "weighted"] = Field("macro", description="How per-class values are averaged.")


class TorchMetric:
    """Adapts a torchmetrics metric to torchtk's metric protocol."""

    def __init__(self, metric, task: str) -> None:
        self.metric = metric
        self.task = task

    def to(self, device):
        self.metric = self.metric.to(device)
        return self

    def reset(self) -> None:
        self.metric.reset()

    def update(self, output, target) -> None:
        if self.task == "binary":
            output, target = output.reshape(-1), target.reshape(-1)
        elif self.task == "multiclass" and target.ndim == output.ndim:
            target = target.argmax(dim=1)  # one-hot targets
        self.metric.update(output, target.long())

    def compute(self) -> float:
        return float(self.metric.compute())


def build(name: str, params: MetricParams) -> TorchMetric:
    import torchmetrics

    if params.task == "multiclass" and params.num_classes is None:
        raise ValueError(f"metric {name!r}: task 'multiclass' needs num_classes")
    if params.task == "multilabel" and params.num_labels is None:
        raise ValueError(f"metric {name!r}: task 'multilabel' needs num_labels")
    kwargs = {"task": params.task}
    if params.task == "multiclass":
        kwargs["num_classes"] = params.num_classes
    if params.task == "multilabel":
        kwargs["num_labels"] = params.num_labels
    if name in THRESHOLDED and params.task != "multiclass":
        kwargs["threshold"] = params.threshold
    if name in AVERAGED and params.task != "binary":
        kwargs["average"] = params.average
    return TorchMetric(getattr(torchmetrics, METRICS[name][0])(**kwargs), params.task)


@hookimpl
def register_components(register):
    for name, (_cls, summary) in METRICS.items():
        register(Component("metric", name, summary, params=MetricParams))


@hookimpl
def make_metric(name, params):
    return build(name, params)
