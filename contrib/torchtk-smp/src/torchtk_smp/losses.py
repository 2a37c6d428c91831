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


def build(name: str, params: Params):
    from segmentation_models_pytorch import losses

    if name == "lovasz_hinge":
        return losses.LovaszLoss(params.mode, per_image=params.per_image, ignore_index=params.ignore_index)
    if name == "lovasz_softmax":
        return losses.LovaszLoss("multiclass", per_image=params.per_image, ignore_index=params.ignore_index)
    mcc = losses.MCCLoss(eps=params.eps)
    if not params.from_logits:
        return mcc

    def mcc_on_logits(output, target):
        return mcc(output.sigmoid(), target)

    return mcc_on_logits


LOSSES = {
    "lovasz_hinge": ("Lovász hinge (smp): an IoU surrogate for binary or multilabel masks, on logits.",
                     LovaszHingeParams, "sigmoid"),
    "lovasz_softmax": ("Lovász softmax (smp): an IoU surrogate for multiclass segmentation, on logits.",
                       LovaszSoftmaxParams, "softmax"),
    "mcc": ("Matthews correlation loss (smp), 1 - MCC of a binary mask.", MccParams, "sigmoid"),
}
