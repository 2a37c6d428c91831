"""What a metric is given (the model's output and the targets), checked and turned into
what torchmetrics expects. A mismatch is reported as :class:`MetricInputError`, naming
the param to change, never with torchmetrics' own text; the probe pass before training
meets it first."""

from __future__ import annotations

from typing import Any

import torch

from torchtk import TorchtkError


class MetricInputError(TorchtkError):
    """The output or targets do not fit the metric's params; the message names the param."""


def columns(output: torch.Tensor) -> int:
    """Output columns per sample: 1 for ``(N,)``, else the size of dimension 1."""
    return 1 if output.ndim < 2 else output.shape[1]


def shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, tensor.shape)) + ")"


class ClassificationInputs:
    """Checks shapes on every call (no device sync) and values once, on the first call."""

    def __init__(self, name: str, params: Any, task: str, task_given: bool = True) -> None:
        self.name, self.task, self.task_given = name, task, task_given
        self.size = params.num_classes if task == "multiclass" else getattr(params, "num_labels", None)
        self.from_logits, self.ignore_index = params.from_logits, params.ignore_index
        self.checked = False

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = output.detach()
        if self.task == "binary":
            preds, target = self._binary(output, target)
        elif self.task == "multiclass":
            preds, target = self._multiclass(output, target)
        else:
            preds, target = self._multilabel(output, target)
        if not self.checked:
            self._check_values(output, target)
            self.checked = True
        return preds, target

    def _binary(self, output, target):
        if columns(output) > 1:
            verb = "has" if self.task_given else "defaults to"
            hint = f"set task: multiclass and num_classes: {columns(output)}"
            if target.shape == output.shape and target.is_floating_point():
                hint += f" (or task: multilabel and num_labels: {columns(output)} for 0/1 targets per column)"
            raise MetricInputError(f"the model outputs {columns(output)} columns but {self.name} {verb} "
                                   f"task: binary; {hint}")
        if target.numel() != output.numel():
            raise MetricInputError(f"the model outputs {shape(output)} but the targets have shape {shape(target)}; "
                                   "task: binary needs one output per target")
        preds = output.reshape(-1).float()
        return (preds.sigmoid() if self.from_logits else preds), binary_targets(target.reshape(-1))

    def _multiclass(self, output, target):
        if columns(output) == 1:
            raise MetricInputError(f"the model outputs 1 column but {self.name} has task: multiclass; "
                                   "set task: binary")
        if columns(output) != self.size:
            raise MetricInputError(f"the model outputs {columns(output)} columns but num_classes is {self.size}; "
                                   f"set num_classes: {columns(output)}")
        if target.shape == output.shape:  # one-hot (or soft) targets
            target = target.argmax(dim=1)
        elif target.shape != output.shape[:1] + output.shape[2:]:
            expected = "(" + ", ".join(map(str, output.shape[:1] + output.shape[2:])) + ")"
            raise MetricInputError(f"targets of shape {shape(target)} do not fit outputs of shape {shape(output)}: "
                                   f"task: multiclass needs class indices of shape {expected} or one-hot targets "
                                   "of the output's shape")
        preds = output.float()
        return (preds.softmax(dim=1) if self.from_logits else preds), target.long()

    def _multilabel(self, output, target):
        if columns(output) != self.size:
            raise MetricInputError(f"the model outputs {columns(output)} columns but num_labels is {self.size}; "
                                   f"set num_labels: {columns(output)}")
        if target.shape != output.shape:
            raise MetricInputError(f"targets of shape {shape(target)} do not fit outputs of shape {shape(output)}: "
                                   "task: multilabel needs 0/1 targets of the output's shape")
        preds = output.float()
        return (preds.sigmoid() if self.from_logits else preds), binary_targets(target)

    def _check_values(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Value checks (one device sync), on the first batch only."""
        if not self.from_logits and output.numel() and (output.min() < 0 or output.max() > 1):
            raise MetricInputError("the model outputs values outside [0, 1] but from_logits is false; "
                                   "set from_logits: true")
        if self.task != "multiclass" or not target.numel():
            return
        kept = target if self.ignore_index is None else target[target != self.ignore_index]
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= self.size):
            bad = int(kept.max()) if int(kept.max()) >= self.size else int(kept.min())
            raise MetricInputError(f"the targets hold class {bad} but num_classes is {self.size} (classes 0.."
                                   f"{self.size - 1}); set num_classes: {max(bad + 1, self.size)}"
                                   + ("" if bad >= 0 else " or ignore_index for the padding value"))


def binary_targets(target: torch.Tensor) -> torch.Tensor:
    """0/1 targets as integers: float targets count as 1 from 0.5 on (hard labels)."""
    return (target >= 0.5).long() if target.is_floating_point() else target.long()


class RegressionInputs:
    """Outputs and targets of the same number of elements, compared element by element."""

    def __init__(self, name: str, flatten: bool = True) -> None:
        self.name, self.flatten = name, flatten

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = output.detach().float()
        if output.numel() != target.numel():
            raise MetricInputError(f"the model outputs {shape(output)} but the targets have shape {shape(target)}; "
                                   f"{self.name} compares one output with one target")
        target = target.float()
        if self.flatten or columns(output) == 1:
            return output.reshape(-1), target.reshape(-1)
        return output.reshape(output.shape[0], -1), target.reshape(output.shape[0], -1)


class MaskInputs:
    """Masks for torchmetrics' segmentation metrics: one-hot ``(N, 1, ...)`` for binary
    masks, class indices ``(N, ...)`` for C classes."""

    def __init__(self, name: str, params: Any) -> None:
        self.name, self.size = name, params.num_classes
        self.threshold, self.from_logits = params.threshold, params.from_logits

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = output.detach()
        if output.ndim < 3 or columns(output) != self.size:
            got = f"{columns(output)} channels" if output.ndim >= 3 else f"shape {shape(output)}"
            raise MetricInputError(f"the model outputs {got} but {self.name} has num_classes: {self.size}; it needs "
                                   f"masks (N, num_classes, H, W)" + (f": set num_classes: {columns(output)}"
                                                                       if output.ndim >= 3 else ""))
        spatial = output.shape[:1] + output.shape[2:]
        if target.shape == output.shape and self.size > 1:
            target = target.argmax(dim=1)
        elif target.shape == spatial and self.size == 1:
            target = target.unsqueeze(1)
        elif target.shape not in (output.shape, spatial):
            raise MetricInputError(f"targets of shape {shape(target)} do not fit masks of shape {shape(output)}")
        if self.size == 1:
            probs = output.float().sigmoid() if self.from_logits else output.float()
            return (probs > self.threshold).long(), binary_targets(target)
        return output.argmax(dim=1), target.long()
