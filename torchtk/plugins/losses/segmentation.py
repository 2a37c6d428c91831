"""Region-overlap losses for segmentation: ``dice``, ``dice_bce``, ``iou`` (``jaccard``), ``tversky``.

nn.Module-style losses: the classes live in ``_regions`` (torch code, imported on first
build); this module only declares them and validates their params.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from torchtk import Component, Params, hookimpl

_LAYOUT = """
Modes and shapes (N batch, C classes, any spatial dims):

* ``binary``: output (N, 1, H, W) or (N, H, W) logits; target of the same shape with 0/1
  (or soft) values. A channel axis of size 1 may be missing on either side.
* ``multiclass``: output (N, C, H, W) logits (softmax over C); target (N, H, W) integer
  class indices, or (N, C, H, W) one-hot / probabilities.
* ``multilabel``: output (N, C, H, W) logits (a sigmoid per channel); target of the same shape.

A region is one class over the whole batch (``reduction: batch``, the tutorial's
behaviour and the default) or one class of one image (``reduction: image``); the loss
is the mean over regions. Region sums run in float32 even under float16 autocast.

``empty_target`` decides what a region whose target is empty contributes:
``penalize_fp`` (default) keeps the smoothed formula, so predicted foreground on an
empty mask costs ``1 - smooth / (sum(p) + smooth)`` and an empty prediction costs 0
(MONAI's behaviour); ``zero`` counts the region as loss 0 in the mean
(segmentation_models_pytorch's behaviour); ``skip`` leaves it out of the mean.
"""


class RegionParams(Params):
    mode: Literal["binary", "multiclass", "multilabel"] = Field(
        "binary", description="binary (one foreground channel), multiclass (softmax over channels, "
                              "index targets) or multilabel (independent sigmoid channels).")
    from_logits: bool = Field(True, description="The output holds logits (sigmoid/softmax applied here) "
                                                "rather than probabilities.")
    smooth: float = Field(1.0, ge=0, description="Added to numerator and denominator of the score "
                                                 "(the tutorial's smooth=1).")
    ignore_index: Optional[int] = Field(None, description="Target value whose pixels are left out entirely "
                                                          "(for example 255 for unlabelled borders).")
    reduction: Literal["batch", "image"] = Field(
        "batch", description="batch: sum each class over the whole batch, then score (tutorial default); "
                             "image: score each image separately, then average.")
    empty_target: Literal["penalize_fp", "zero", "skip"] = Field(
        "penalize_fp", description="What a region with an empty target contributes: penalize_fp (smoothed "
                                   "formula, predicted foreground costs), zero (loss 0, counted in the mean), "
                                   "skip (left out of the mean).")


class DiceParams(RegionParams):
    __doc__ = """Soft Dice loss: ``1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)``.

p are the predicted probabilities, t the targets. With the defaults (binary,
smooth 1, reduction over the batch) this is exactly the widely copied tutorial
``DiceLoss``; MONAI's ``DiceLoss(sigmoid=True, batch=True, smooth_nr=1, smooth_dr=1)``
and segmentation_models_pytorch's ``DiceLoss(smooth=1)`` compute the same score
(smp sums the batch per class, i.e. ``reduction: batch``, and uses ``empty_target: zero``).
""" + _LAYOUT


class IoUParams(RegionParams):
    __doc__ = """Soft IoU (Jaccard) loss: ``1 - (I + smooth) / (sum(p) + sum(t) - I + smooth)``, I = ``sum(p * t)``.

Equals the tutorial ``IoULoss`` with the defaults, and segmentation_models_pytorch's
``JaccardLoss`` / MONAI's ``DiceLoss(jaccard=True)`` with matching smoothing.
""" + _LAYOUT


class TverskyParams(RegionParams):
    __doc__ = """Tversky loss, and focal-Tversky with ``gamma``:
``(1 - (TP + s) / (TP + alpha * FP + beta * FN + s)) ** gamma`` per region,
TP = ``sum(p * t)``, FP = ``sum(p * (1 - t))``, FN = ``sum((1 - p) * t)``.

alpha = beta = 0.5 is Dice; alpha = beta = 1 is IoU; beta > alpha punishes missed
foreground more (recall-oriented). gamma = 1 is the plain Tversky loss (the tutorial's
``TverskyLoss``); other values give the tutorial's ``FocalTverskyLoss``.
""" + _LAYOUT

    alpha: float = Field(0.5, ge=0, description="Weight of false positives.")
    beta: float = Field(0.5, ge=0, description="Weight of false negatives.")
    gamma: float = Field(1.0, gt=0, description="Focal exponent applied to each region's Tversky loss (1: plain Tversky).")


class DiceBCEParams(RegionParams):
    __doc__ = """BCE + Dice: ``bce_weight * BCE + dice_weight * Dice``, the tutorial's ``DiceBCELoss``.

BCE is binary cross entropy on the logits (stable), averaged over the pixels that
count; in multiclass mode it is the softmax cross entropy. The Dice term is exactly
the ``dice`` loss with the same options. Equivalent to MONAI's ``DiceCELoss`` and to
summing segmentation_models_pytorch's ``SoftBCEWithLogitsLoss`` and ``DiceLoss``.
""" + _LAYOUT

    bce_weight: float = Field(1.0, ge=0, description="Weight of the cross-entropy term.")
    dice_weight: float = Field(1.0, ge=0, description="Weight of the Dice term.")


_CATALOG = (
    ("dice", "Soft Dice loss for segmentation (binary, multiclass, multilabel).", DiceParams, ()),
    ("dice_bce", "BCE + Dice, the usual segmentation combination.", DiceBCEParams, ("bce_dice",)),
    ("iou", "Soft IoU (Jaccard) loss for segmentation.", IoUParams, ("jaccard",)),
    ("tversky", "Tversky and focal-Tversky loss: Dice with separate FP/FN weights.", TverskyParams,
     ("focal_tversky",)),
)


@hookimpl
def register_components(register):
    for name, summary, params, aliases in _CATALOG:
        register(Component("loss", name, summary, params=params, aliases=aliases))


@hookimpl
def make_loss(name, params):
    from torchtk.plugins.losses._regions import LOSSES

    return LOSSES[name](**params.model_dump())
