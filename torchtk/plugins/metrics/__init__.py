"""Built-in metrics: classification, regression and segmentation, on torchmetrics.

The catalog is plain data, so ``tk list metrics`` and ``tk show`` import neither torch
nor torchmetrics; a metric's module is imported when a run builds it. ``accuracy``
(micro average) is computed here without torchmetrics, so a run that logs only
accuracy does not pay torchmetrics' import (about 2 s). Every metric accumulates on
the device and synchronises once, in ``compute()``.
"""

from __future__ import annotations

from torchtk import Component, hookimpl
from torchtk.plugins.metrics import params as P

# name -> (torchmetrics class, or how it is built; one-line summary; params model; aliases)
CLASSIFICATION: dict[str, tuple[str, str, type, tuple[str, ...]]] = {
    "precision": ("Precision", "Precision: fraction of predicted positives that are positive.", P.AveragedParams, ()),
    "recall": ("Recall", "Recall (sensitivity): fraction of positives that are found.", P.AveragedParams,
               ("sensitivity",)),
    "f1": ("F1Score", "F1 score: harmonic mean of precision and recall.", P.AveragedParams, ("f1_score",)),
    "specificity": ("Specificity", "Specificity: fraction of negatives predicted negative.", P.AveragedParams, ()),
    "jaccard_index": ("JaccardIndex", "Jaccard index (IoU) of predicted and true labels.", P.AveragedParams, ()),
    "auroc": ("AUROC", "Area under the ROC curve.", P.CurveParams, ("roc_auc",)),
    "average_precision": ("AveragePrecision", "Average precision: area under the precision-recall curve.",
                          P.CurveParams, ()),
    "matthews_corrcoef": ("MatthewsCorrCoef", "Matthews correlation coefficient, robust to class imbalance.",
                          P.ClassificationParams, ("mcc",)),
    "cohen_kappa": ("CohenKappa", "Cohen's kappa: agreement corrected for chance.", P.KappaParams, ()),
}
OTHERS: dict[str, tuple[str, str, type, tuple[str, ...]]] = {
    "accuracy": ("Accuracy", "Fraction of correct predictions (binary, multiclass with top_k, multilabel).",
                 P.AccuracyParams, ("acc",)),
    "confusion_matrix": ("ConfusionMatrix", "Confusion matrix of the best epoch, as confusion_matrix.png and "
                         ".json (no column).", P.ConfusionMatrixParams, ()),
    "mse": ("MeanSquaredError", "Mean squared error (or its root, squared: false).", P.MSEParams, ()),
    "mae": ("MeanAbsoluteError", "Mean absolute error.", P.MAEParams, ()),
    "r2": ("R2Score", "Coefficient of determination R².", P.R2Params, ("r2_score",)),
    "dice": ("segmentation.DiceScore", "Dice score of predicted and true segmentation masks.", P.DiceParams, ()),
    "iou": ("segmentation.MeanIoU", "Mean intersection over union of predicted and true segmentation masks.",
            P.IoUParams, ("mean_iou", "mask_iou", "jaccard")),
}
METRICS = {**CLASSIFICATION, **OTHERS}


@hookimpl
def register_components(register):
    for name, (_cls, summary, params, aliases) in METRICS.items():
        register(Component("metric", name, summary, params=params, aliases=aliases))


@hookimpl
def make_metric(name, params, classes):
    if name == "accuracy" and params.average == "micro" and params.ignore_index is None:
        from torchtk.plugins.metrics._accuracy import Accuracy

        return Accuracy(params)
    from torchtk.plugins.metrics import _torchmetrics as tm

    if name in CLASSIFICATION or name == "accuracy":
        return tm.classification(name, METRICS[name][0], params, classes)
    if name == "confusion_matrix":
        from torchtk.plugins.metrics._confusion import ConfusionMatrix

        return ConfusionMatrix(params, classes)
    if name in ("mse", "mae", "r2"):
        return tm.regression(name, params)
    return tm.segmentation(name, params, classes)
