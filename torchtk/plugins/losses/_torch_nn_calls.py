"""Adapters for torch losses whose ``forward`` takes more than ``(input, target)``.

The engine calls every loss as ``loss(output, target)``; these read the extra tensors
from a tuple output (and, for CTC, a tuple target), with a clear error otherwise.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchtk.plugins.losses._inputs import LossInputError

_EXPECTED = {
    "two_inputs": ("output", 2, "(x1, x2)"),
    "triplet": ("output", 3, "(anchor, positive, negative)"),
    "mean_var": ("output", 2, "(mean, var)"),
    "ctc": ("output", 2, "(log_probs, input_lengths)"),
}


def _unpack(name: str, value: Any, count: int, what: str, where: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != count:
        got = f"a {type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise LossInputError(f"loss {name!r}: the {where} must be a tuple {what}, got {got}")
    return tuple(value)


class TupleCall(nn.Module):
    """Calls ``loss`` with arguments unpacked from ``(output, target)``."""

    def __init__(self, loss: nn.Module, name: str, convention: str) -> None:
        super().__init__()
        self.loss, self.name, self.convention = loss, name, convention

    def forward(self, output: Any, target: Any) -> Any:
        where, count, what = _EXPECTED[self.convention]
        parts = _unpack(self.name, output, count, what, where)
        if self.convention == "two_inputs":
            return self.loss(parts[0], parts[1], target)
        if self.convention == "triplet":
            return self.loss(*parts)
        if self.convention == "mean_var":
            return self.loss(parts[0], target, parts[1])
        log_probs, input_lengths = parts
        targets, target_lengths = _unpack(self.name, target, 2, "(targets, target_lengths)", "target")
        return self.loss(log_probs, targets, input_lengths, target_lengths)


def with_class_check(loss_class: type, name: str) -> type:
    """``loss_class`` refusing outputs with a single class column (softmax over one logit
    is always 1, so the loss would be 0 and nothing would train)."""

    class ClassScoresLoss(loss_class):  # type: ignore[misc, valid-type]
        def forward(self, input: Any, target: Any) -> Any:
            classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
            if classes < 2:
                raise LossInputError(
                    f"loss {name!r}: the output has {classes} class score(s) in dim 1 (shape "
                    f"{tuple(input.shape)}); it needs one per class, at least 2. For a single logit per "
                    "sample use bce_with_logits or focal")
            return super().forward(input, target)

    ClassScoresLoss.__name__ = ClassScoresLoss.__qualname__ = loss_class.__name__
    return ClassScoresLoss
