"""Accuracy without torchmetrics (micro average): the default examples log it, and
importing torchmetrics would add about 2 s to every such run. Equal to torchmetrics'
``Accuracy`` on the same inputs for every task (tests/plugins/test_metrics.py)."""

from __future__ import annotations

import math
from typing import Any

import torch

from torchtk.plugins.metrics._inputs import ClassificationInputs, columns


class Accuracy:
    """Counts correct predictions on the device; reads them once, in ``compute()``."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self.inputs: dict[str, ClassificationInputs] = {}
        self.logit_threshold = logit(params.threshold) if params.from_logits else None
        self.reset()

    def reset(self) -> None:
        self.correct: Any = 0
        self.total = 0

    def _inputs(self, output: torch.Tensor) -> ClassificationInputs:
        """The input adapter for the task (given, or read from the output's columns)."""
        task = self.params.task or ("multiclass" if columns(output) > 1 else "binary")
        if task not in self.inputs:
            params = self.params
            if task == "multiclass" and params.num_classes is None:
                params = params.model_copy(update={"num_classes": columns(output)})
            self.inputs[task] = ClassificationInputs("accuracy", params, task, task_given=self.params.task is not None)
        return self.inputs[task]

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        inputs = self._inputs(output)
        if inputs.checked and inputs.task == "binary" and self.logit_threshold is not None \
                and columns(output) == 1 and target.numel() == output.numel():
            # after the first batch's checks: the logit against the threshold's logit, no
            # sigmoid and no dtype casts (a third of the time of a rings validation batch)
            target = target.reshape(-1)
            truth = target >= 0.5 if target.is_floating_point() else target.bool()
            hits = (output.detach().reshape(-1) > self.logit_threshold) == truth
            self.correct = self.correct + hits.sum()
            self.total += hits.numel()
            return
        preds, target = inputs(output, target)
        if inputs.task == "multiclass":
            if self.params.top_k == 1:
                hits = preds.argmax(dim=1) == target
            else:
                hits = (preds.topk(self.params.top_k, dim=1).indices == target.unsqueeze(1)).any(dim=1)
        else:
            hits = (preds > self.params.threshold) == target.bool()
        self.correct = self.correct + hits.sum()
        self.total += hits.numel()

    def compute(self) -> float:
        counts = torch.tensor([float(self.correct), float(self.total)], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.to(self.correct.device if torch.is_tensor(self.correct) else "cpu")
            torch.distributed.all_reduce(counts)
        correct, total = counts.tolist()
        return correct / total if total else 0.0


def logit(probability: float) -> float:
    """The logit a probability threshold corresponds to (sigmoid(x) > p exactly when x > logit(p))."""
    if probability <= 0:
        return -math.inf
    if probability >= 1:
        return math.inf
    return math.log(probability / (1 - probability))
