"""Input checks shared by the built-in losses: clear messages instead of torch's broadcasting surprises.

Imported only when a loss is built (the functions take tensors, but never import torch
at module level).
"""

from __future__ import annotations

from typing import Any

from torchtk import TorchtkError


class LossInputError(TorchtkError, ValueError):
    """A loss was called with tensors whose shapes or types it cannot use."""


def shape_text(tensor: Any) -> str:
    return str(tuple(tensor.shape))


def fail(loss: str, output: Any, target: Any, expected: str) -> LossInputError:
    return LossInputError(
        f"loss {loss!r}: output shape {shape_text(output)} and target shape {shape_text(target)} "
        f"do not fit; expected {expected}"
    )


def same_shape(loss: str, output: Any, target: Any) -> tuple[Any, Any]:
    """``output`` and ``target`` of one shape; a lone channel axis of size 1 on either side
    is dropped (``(N, 1, H, W)`` against ``(N, H, W)``), never broadcast."""
    if output.shape == target.shape:
        return output, target
    if output.ndim == target.ndim + 1 and output.shape[1] == 1 and output.shape[:1] + output.shape[2:] == target.shape:
        return output, target.unsqueeze(1)
    if target.ndim == output.ndim + 1 and target.shape[1] == 1 and target.shape[:1] + target.shape[2:] == output.shape:
        return output, target.squeeze(1)
    raise fail(loss, output, target, "a target of the output's shape (a channel axis of size 1 may be left out)")


def class_indices(loss: str, output: Any, target: Any) -> bool:
    """For multiclass output ``(N, C, ...)``: True if ``target`` holds class indices
    ``(N, ...)``, False if it holds per-class values of the output's shape (one-hot or
    probabilities; an integer or bool one-hot is cast by the caller, as MONAI does).
    Anything else is an error."""
    if output.ndim < 2:
        raise fail(loss, output, target, "multiclass output (N, C, ...) with at least two dimensions")
    if target.shape == output.shape:
        if target.is_complex():
            raise LossInputError(f"loss {loss!r}: target dtype is {target.dtype}; expected a real one-hot or "
                                 "probability tensor (float, integer or bool)")
        return False
    if target.shape == output.shape[:1] + output.shape[2:]:
        if target.is_floating_point():
            raise LossInputError(
                f"loss {loss!r}: multiclass target of shape {shape_text(target)} holds floats; "
                "class indices must be an integer tensor"
            )
        return True
    raise fail(loss, output, target, f"class indices of shape {shape_text(output[:, 0])} "
                                     f"or one-hot/probabilities of shape {shape_text(output)}")
