"""smp's losses that torchtk lacks: Lovász hinge and Lovász softmax (Berman et al. 2018,
a convex surrogate of the IoU) and MCC (1 - Matthews correlation). Each is smp's own
``segmentation_models_pytorch.losses`` class; torchtk validates the params.

smp's ``SoftBCEWithLogitsLoss`` and ``SoftCrossEntropyLoss`` are not repeated here:
torchtk's built-in ``soft_bce`` and ``cross_entropy`` (``label_smoothing``, ``ignore_index``)
compute the same values (``tests/test_smp_losses.py`` checks them against smp), and
``dice``, ``iou`` (``jaccard``), ``tversky`` and ``focal`` are built-ins too.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from torchtk import Params


class LovaszHingeParams(Params):
    """Lovász hinge on logits: binary masks (N, 1, H, W) or multilabel (N, C, H, W) float targets in {0, 1}."""

    mode: Literal["binary", "multilabel"] = Field("binary", description="binary: one mask; multilabel: C masks.")
    per_image: bool = Field(False, description="Average the loss per image (true) or over the whole batch.")
    ignore_index: Optional[int] = Field(None, description="Target value whose pixels are left out.")


class LovaszSoftmaxParams(Params):
    """Lovász softmax on class logits (N, C, H, W) with int64 class targets (N, H, W)."""

    per_image: bool = Field(False, description="Average the loss per image (true) or over the whole batch.")
    ignore_index: Optional[int] = Field(None, description="Class index whose pixels are left out.")


class MccParams(Params):
    """1 - Matthews correlation coefficient of a binary mask (N, 1, H, W)."""

    eps: float = Field(1e-5, gt=0, description="Added to each confusion count, for all-one-class batches.")
    from_logits: bool = Field(True, description="The output is logits (a sigmoid is applied) or probabilities.")


def _tensors(name: str, output, target):
    import torch

    from torchtk.plugins.losses._inputs import LossInputError, describe

    if not (isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor)):
        raise LossInputError(f"loss {name!r}: takes an output tensor and a target tensor, got output "
                             f"{describe(output)} and target {describe(target)}")
    if not output.is_floating_point() or output.numel() == 0 or output.ndim < 2:
        raise LossInputError(f"loss {name!r}: output {describe(output)} must be a non-empty float tensor "
                             f"(N, C, ...) of logits")


def _masks(name: str, loss):
    """A binary / multilabel loss on ``(N, C, ...)`` logits and a target of their shape, in float32."""
    from torchtk.plugins.losses._inputs import same_shape

    def masks_loss(output, target):
        _tensors(name, output, target)
        output, target = same_shape(name, output, target)
        return loss(output.float(), target.float())

    return masks_loss


def _classes(name: str, loss):
    """A multiclass loss on ``(N, C, ...)`` logits and int64 class indices ``(N, ...)``."""
    from torchtk.plugins.losses._inputs import class_indices, fail

    def classes_loss(output, target):
        _tensors(name, output, target)
        if not class_indices(name, output, target):
            raise fail(name, output, target, f"class indices of shape {tuple(output[:, 0].shape)}")
        return loss(output.float(), target.long())

    return classes_loss


def build(name: str, params: Params):
    """smp's loss, behind torchtk's input checks: a tuple, an empty batch or a shape that does
    not fit is one clear error naming the loss (``torchtk.plugins.losses._inputs``)."""
    from segmentation_models_pytorch import losses

    from torchtk.plugins.losses._inputs import checked

    if name == "lovasz_hinge":
        loss = _masks(name, losses.LovaszLoss(params.mode, per_image=params.per_image,
                                              ignore_index=params.ignore_index))
    elif name == "lovasz_softmax":
        loss = _classes(name, losses.LovaszLoss("multiclass", per_image=params.per_image,
                                                ignore_index=params.ignore_index))
    else:
        mcc = losses.MCCLoss(eps=params.eps)
        loss = _masks(name, (lambda output, target: mcc(output.sigmoid(), target)) if params.from_logits else mcc)
    return checked(name, loss)


LOSSES = {
    "lovasz_hinge": ("Lovász hinge (smp): an IoU surrogate for binary or multilabel masks, on logits.",
                     LovaszHingeParams, "sigmoid"),
    "lovasz_softmax": ("Lovász softmax (smp): an IoU surrogate for multiclass segmentation, on logits.",
                       LovaszSoftmaxParams, "softmax"),
    "mcc": ("Matthews correlation loss (smp), 1 - MCC of a binary mask.", MccParams, "sigmoid"),
}
