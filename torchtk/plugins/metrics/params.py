"""The metrics' params models: plain pydantic, so ``tk list`` and ``tk show`` import no torch."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from torchtk import Params

Task = Literal["binary", "multiclass", "multilabel"]
Average = Literal["micro", "macro", "weighted", "none"]


TASKS = """
    ``binary``: one output column per sample (logits of shape ``(N,)`` or ``(N, 1)``),
    0/1 targets of the same size. ``multiclass``: ``(N, C)`` logits (or ``(N, C, ...)``)
    and integer class targets ``(N,)`` (or one-hot ``(N, C)``); ``num_classes`` is
    required. ``multilabel``: ``(N, L)`` logits and 0/1 targets ``(N, L)``;
    ``num_labels`` is required.
"""


class ClassificationParams(Params):
    """A classification metric (torchmetrics)."""

    task: Task = Field("binary", description="Kind of classification: binary, multiclass or multilabel.")
    num_classes: Optional[int] = Field(None, ge=2, description="Number of classes (task: multiclass).")
    num_labels: Optional[int] = Field(None, ge=1, description="Number of labels (task: multilabel).")
    threshold: float = Field(0.5, ge=0, le=1, description="Probability above which a binary or multilabel "
                                                            "output counts as positive.")
    from_logits: bool = Field(True, description="The model outputs logits (a sigmoid or softmax is applied "
                                                "here) rather than probabilities.")
    ignore_index: Optional[int] = Field(None, description="Target value left out of the metric (padding).")

    @model_validator(mode="after")
    def _sizes_for_task(self) -> "ClassificationParams":
        if self.task == "multiclass" and self.num_classes is None:
            raise ValueError("task: multiclass needs num_classes (the number of output columns)")
        if self.task == "multilabel" and self.num_labels is None:
            raise ValueError("task: multilabel needs num_labels (the number of output columns)")
        return self


class AveragedParams(ClassificationParams):
    """A classification metric computed per class and averaged (torchmetrics).

    ``average: none`` logs one column per class, ``val_<name>/<class>``,
    named after the dataset's classes when it has them, else the class index."""

    average: Average = Field("macro", description="micro (over all samples), macro (mean over classes), "
                                                  "weighted (by class support) or none (one column per class); "
                                                  "binary tasks ignore it.")


class AccuracyParams(AveragedParams):
    """Fraction of correct predictions.

    Without ``task``, the output decides: one column is binary (a probability above
    ``threshold`` predicts 1), several columns are multiclass (the arg-max is the
    prediction, compared with integer or one-hot targets). ``top_k`` counts a sample
    as correct when its class is among the k highest outputs (multiclass). Computed by
    torchtk itself for ``average: micro`` (no torchmetrics import, equal to torchmetrics'
    Accuracy: tested), by torchmetrics otherwise.
    """

    task: Optional[Task] = Field(None, description="binary, multiclass or multilabel; default: from the output "
                                                   "(one column binary, several multiclass).")
    top_k: int = Field(1, ge=1, description="A multiclass sample is correct when its class is among the top_k outputs.")
    average: Average = Field("micro", description="micro (fraction of correct samples), macro (mean per-class "
                                                  "recall), weighted or none (one column per class).")

    @model_validator(mode="after")
    def _explicit_task_for_torchmetrics(self) -> "AccuracyParams":
        if (self.average != "micro" or self.ignore_index is not None) and self.task is None:
            asked = f"average: {self.average}" if self.average != "micro" else "ignore_index"
            raise ValueError(f"{asked} needs an explicit task (and num_classes or num_labels)")
        if self.top_k > 1 and self.task not in (None, "multiclass"):
            raise ValueError(f"top_k counts the k highest of several classes: it needs task: multiclass, "
                             f"not {self.task}")
        return self


class CurveParams(ClassificationParams):
    """A ranking metric over the predicted probabilities (torchmetrics).

    Exact by default (every prediction of the pass is kept); ``thresholds`` bins them."""

    threshold: float = Field(0.5, ge=0, le=1, description="Unused by ranking metrics (kept for a shared spec shape).")
    average: Literal["macro", "weighted", "none"] = Field(
        "macro", description="macro, weighted or none (one column per class); binary tasks ignore it.")
    thresholds: Optional[int] = Field(None, ge=2, description="Number of evenly spaced thresholds (constant "
                                                              "memory); null: exact.")


class KappaParams(ClassificationParams):
    """Cohen's kappa (torchmetrics): agreement corrected for chance; binary or multiclass."""

    weights: Optional[Literal["linear", "quadratic"]] = Field(
        None, description="Weighting of disagreements for ordinal classes: linear, quadratic or null (none).")

    @model_validator(mode="after")
    def _no_multilabel(self) -> "KappaParams":
        if self.task == "multilabel":
            raise ValueError("cohen_kappa has no multilabel task; use binary or multiclass")
        return self


class ConfusionMatrixParams(ClassificationParams):
    """The confusion matrix of the validation pass (torchmetrics): rows are the true
    classes, columns the predicted ones. Logs no column; at every new best epoch it
    writes ``confusion_matrix.png`` (class names on the axes when the dataset has them,
    counts in the cells) and ``confusion_matrix.json`` to the run directory.
    ``multilabel`` gives one 2x2 matrix per label."""

    normalize: Literal["none", "true", "pred", "all"] = Field(
        "none", description="none (counts), true (each row sums to 1), pred (each column sums to 1) or all.")


class MSEParams(Params):
    """Mean squared error (torchmetrics) between outputs and targets of the same size
    (an ``(N, 1)`` output and ``(N,)`` targets are compared sample by sample)."""

    squared: bool = Field(True, description="true: mean squared error; false: its square root (RMSE).")


class MAEParams(Params):
    """Mean absolute error (torchmetrics) between outputs and targets of the same size."""


class R2Params(Params):
    """Coefficient of determination R² (torchmetrics); several output columns are
    several regression targets."""

    adjusted: int = Field(0, ge=0, description="Number of independent regressors for the adjusted R² (0: plain R²).")
    multioutput: Literal["uniform_average", "variance_weighted"] = Field(
        "uniform_average", description="How the R² of several outputs is averaged.")


class SegmentationParams(Params):
    """A segmentation metric over masks (``torchmetrics.segmentation``)."""

    num_classes: int = Field(1, ge=1, description="Output channels: 1 for binary masks, C for C classes.")
    include_background: bool = Field(True, description="Count class 0 (with num_classes >= 2).")
    threshold: float = Field(0.5, gt=0, lt=1, description="Probability above which a pixel is foreground "
                                                          "(num_classes: 1).")
    from_logits: bool = Field(True, description="The output holds logits (true) or probabilities (false).")
    per_class: bool = Field(False, description="One column per class, val_<name>/<class>, instead of their mean.")


class DiceParams(SegmentationParams):
    """Dice score 2|P∩T| / (|P| + |T|) of predicted and true masks (torchmetrics DiceScore).

    ``num_classes: 1``: binary masks; the output is ``(N, 1, H, W)`` logits and the
    targets 0/1 masks. ``num_classes: C``: ``(N, C, H, W)`` logits, targets class indices
    ``(N, H, W)`` or one-hot. Classes absent from an image's prediction and target are
    left out of its mean.
    """

    aggregation_level: Literal["global", "samplewise"] = Field(
        "samplewise", description="samplewise: the mean of each image's score; global: one score over all pixels.")


class IoUParams(SegmentationParams):
    """Mean intersection over union of predicted and true masks (torchmetrics MeanIoU).

    Per image and class, averaged over the images and classes present (1.0 when no image
    has foreground in its prediction or its target). ``num_classes: 1``: binary masks,
    ``(N, 1, H, W)`` logits and 0/1 masks ``(N, 1, H, W)`` or ``(N, H, W)``.
    ``num_classes: C``: ``(N, C, H, W)`` logits (the arg-max is the predicted class),
    targets class indices ``(N, H, W)`` or one-hot ``(N, C, H, W)``.
    """


for _model in (ClassificationParams, AveragedParams, CurveParams, KappaParams, ConfusionMatrixParams):
    _model.__doc__ = _model.__doc__.rstrip() + "\n" + TASKS
