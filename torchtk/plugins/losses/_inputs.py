"""Input checks shared by the built-in losses: clear messages instead of torch's broadcasting surprises.

:func:`checked` wraps every built-in loss: whatever torch raises for inputs it cannot
use (a shape that does not fit, a dtype it has no kernel for, a tuple where a tensor
belongs) becomes a :class:`LossInputError` naming the loss, what it was given and
torch's reason (``tests/fuzz/test_fuzz_losses.py`` holds this for every loss).

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


# -- every built-in loss: a clear error instead of torch's own ---------------------------------

# what torch raises for inputs of the wrong shape, dtype or kind ("mse_cpu" not implemented for
# 'Bool', "The size of tensor a (2) must match ...", 'tuple' object has no attribute 'shape')
INPUT_FAILURES = (RuntimeError, ValueError, TypeError, IndexError, AttributeError, NotImplementedError)


def describe(value: Any) -> str:
    """``(4, 3) float32`` for a tensor, ``a tuple of (4,) float32, (4,) int64`` for a tuple."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (tuple, list)):
        parts = ", ".join(describe(item) for item in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"a {type(value).__name__} of {parts}" if value else f"an empty {type(value).__name__}"
    return f"a {type(value).__name__}"


def call_checked(name: str, function: Any, output: Any, target: Any) -> Any:
    """``function(output, target)``; torch's exception for inputs it cannot use becomes a
    :class:`LossInputError` naming the loss, the shapes and dtypes it was given and
    torch's reason. Running out of memory is not an input error and stays as it is. On
    inputs without elements a non-finite value (the mean of nothing) is an error too;
    only then is the value read, so a training step never waits for it."""
    try:
        value = function(output, target)
    except TorchtkError:
        raise
    except INPUT_FAILURES as exc:
        if type(exc).__name__ == "OutOfMemoryError":
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LossInputError(f"loss {name!r} cannot use output {describe(output)} and target {describe(target)}: "
                             f"{reason[:300]}") from exc
    if _empty(output) or _empty(target):
        if hasattr(value, "isfinite") and not bool(value.isfinite().all()):
            raise LossInputError(f"loss {name!r}: output {describe(output)} and target {describe(target)} hold no "
                                 "elements, so the loss is undefined; a batch needs at least one sample")
    return value


def _empty(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(_empty(item) for item in value)
    return hasattr(value, "numel") and value.numel() == 0


def checked(name: str, loss: Any) -> Any:
    """``loss`` (a module or a function) calling through :func:`call_checked`. A module
    keeps its class, parameters and buffers: it becomes an instance of a subclass that
    only wraps ``forward``."""
    import torch

    if isinstance(loss, torch.nn.Module):
        loss.__class__ = _checked_class(type(loss))
        loss.torchtk_loss_name = name
        return loss

    def checked_loss(output: Any, target: Any) -> Any:
        return call_checked(name, loss, output, target)

    checked_loss.__wrapped__ = loss  # type: ignore[attr-defined]
    return checked_loss


_CHECKED: dict[type, type] = {}


def _checked_class(cls: type) -> type:
    if getattr(cls, "_torchtk_checked", False):
        return cls
    if cls not in _CHECKED:
        def forward(self: Any, output: Any, target: Any) -> Any:
            return call_checked(self.torchtk_loss_name, super(checked_class, self).forward, output, target)

        checked_class = type(cls.__name__, (cls,), {"forward": forward, "_torchtk_checked": True,
                                                    "__qualname__": cls.__qualname__, "__module__": cls.__module__})
        _CHECKED[cls] = checked_class
    return _CHECKED[cls]
