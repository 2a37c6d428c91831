"""A MONAI loss behind torchtk's conventions: ``loss(output, target)`` with torchtk's
target layouts (class indices for multiclass, a channel axis of size 1 optional for
binary), MONAI's activation chosen by ``mode`` and ``from_logits``."""

from __future__ import annotations

from typing import Any

import torch

from torchtk import TorchtkError

import torchtk_monai


class LossInputError(TorchtkError, ValueError):
    """A loss was called with tensors whose shapes it cannot use."""


def monai_arguments(params: Any) -> dict[str, Any]:
    """The monai constructor's keyword arguments for validated ``params``."""
    values = params.model_dump()
    mode, from_logits = values.pop("mode"), values.pop("from_logits")
    arguments = {torchtk_monai.RENAMED.get(k, k): v for k, v in values.items()}
    arguments["softmax" if mode == "multiclass" else "sigmoid"] = from_logits
    return arguments


def build(name: str, class_name: str, params: Any) -> "MonaiLoss":
    import monai.losses

    from torchtk.plugins.losses._inputs import checked  # torch's errors for unusable inputs: a LossInputError

    return checked(name, MonaiLoss(name, getattr(monai.losses, class_name)(**monai_arguments(params)), params.mode))


class MonaiLoss(torch.nn.Module):
    """``loss(output, target) -> scalar``; targets laid out as MONAI wants them (float,
    one channel per class), built from torchtk's layouts."""

    def __init__(self, name: str, loss: torch.nn.Module, mode: str) -> None:
        super().__init__()
        self.name, self.loss, self.mode = name, loss, mode

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = self.layout(output, target)
        try:
            return self.loss(output, target)
        except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
            raise LossInputError(f"loss {self.name!r} (monai {type(self.loss).__name__}): output "
                                 f"{tuple(output.shape)}, target {tuple(target.shape)}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc

    def layout(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise LossInputError(f"loss {self.name!r}: output and target must be tensors, got "
                                 f"{type(output).__name__} and {type(target).__name__}")
        if self.mode == "multiclass" and target.shape == output.shape[:1] + output.shape[2:] and output.ndim >= 3:
            if target.is_floating_point():
                raise LossInputError(f"loss {self.name!r}: multiclass class-index targets must be integers, got "
                                     f"{target.dtype}")
            classes = output.shape[1]
            if target.numel() and (int(target.min()) < 0 or int(target.max()) >= classes):
                raise LossInputError(f"loss {self.name!r}: class indices must be in 0..{classes - 1} for an output "
                                     f"of {classes} channels, got {int(target.min())}..{int(target.max())}")
            target = torch.nn.functional.one_hot(target.long(), classes).movedim(-1, 1)
        elif self.mode == "binary":  # the channel axis of size 1 may be missing on either side, or both
            if output.ndim == target.ndim + 1 and output.shape[1] == 1:
                target = target.unsqueeze(1)
            elif target.ndim == output.ndim + 1 and target.shape[1] == 1:
                output = output.unsqueeze(1)
            elif output.shape == target.shape and output.ndim >= 2 and output.shape[1] != 1:
                output, target = output.unsqueeze(1), target.unsqueeze(1)
        if output.shape != target.shape:
            raise LossInputError(f"loss {self.name!r} ({self.mode}): output {tuple(output.shape)} and target "
                                 f"{tuple(target.shape)} do not fit; expected " + EXPECTED[self.mode])
        if output.ndim < 3 or ("cldice" in self.name and output.ndim not in (4, 5)):  # clDice skeletonises 2-D/3-D
            raise LossInputError(f"loss {self.name!r}: expected images (N, C, H, W) or volumes (N, C, D, H, W), got "
                                 f"output {tuple(output.shape)}")
        if output.numel() == 0:  # MONAI's reductions give nan (or fail) on an empty batch
            raise LossInputError(f"loss {self.name!r}: output {tuple(output.shape)} and target "
                                 f"{tuple(target.shape)} are empty; expected at least one sample and pixel")
        return output, target.to(output.dtype)


EXPECTED = {"binary": "output (N, 1, H, W) or (N, H, W) and a target of the same shape (0/1)",
            "multiclass": "output (N, C, H, W) and target (N, H, W) class indices or (N, C, H, W) one-hot",
            "multilabel": "output (N, C, H, W) and a target of the same shape"}
