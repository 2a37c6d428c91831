"""Region-overlap losses for segmentation: ``dice``, ``dice_bce``, ``iou`` (``jaccard``), ``tversky``.

nn.Module-style losses: the classes live in ``_regions`` (torch code, imported on first
build); this module only declares them and validates their params.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, model_validator

from torchtk import Component, Params, hookimpl

_LAYOUT = """
Modes and shapes (N batch, C classes, any spatial dims):

* ``binary``: output (N, 1, H, W) or (N, H, W) logits; target of the same shape with 0/1
  (or soft) values. A channel axis of size 1 may be missing on either side.
* ``multiclass``: output (N, C, H, W) logits (softmax over C); target (N, H, W) integer
  class indices (any integer dtype), or (N, C, H, W) one-hot / probabilities (integer
  one-hot targets are cast, as MONAI does).
* ``multilabel``: output (N, C, H, W) logits (a sigmoid per channel); target of the same shape.

A region is one class over the whole batch (``regions: batch``, the tutorial's
behaviour and the default) or one class of one image (``regions: image``). With
``I = sum(p t)``, ``P = sum(p)`` and ``T = sum(t)`` per region the score is computed per
region, the loss is ``1 - score`` (``log_loss``: ``-log(max(score, 1e-7))``, smp's), and
``reduction`` takes the mean over regions (``sum``; ``none`` returns the per-region
losses, shape (C,) or (N, C)). ``smooth`` sets both ``smooth_nr`` (numerator) and
``smooth_dr`` (denominator) unless they are given. Region sums run in float32 even
under float16 autocast.

Options (MONAI's and smp's names): ``include_background: false`` leaves channel 0 out;
``classes`` scores only the listed channels; ``class_weights`` (one per output channel)
multiplies each class's loss and the mean becomes ``sum(w L) / sum(w)`` over the regions
counted (smp's rule: weights need not sum to anything; MONAI's plain mean of ``w L``
equals this times ``sum(w) / C``); ``squared_pred`` sums ``p²`` and ``t²`` in the
denominator (``P = sum(p²)``, ``T = sum(t²)``); ``soft_label`` takes
``I = (P + T - sum|p - t|) / 2``, equal to ``sum(p t)`` for 0/1 targets and correct for
soft ones (MONAI's and smp's formulation).

``empty_target`` decides what a region whose target is empty contributes:
``penalize_fp`` (default) keeps the smoothed formula, so predicted foreground on an
empty mask costs ``1 - smooth / (sum(p) + smooth)`` and an empty prediction costs 0
(MONAI's behaviour); ``zero`` counts the region as loss 0 in the mean
(segmentation_models_pytorch's behaviour); ``skip`` leaves it out of the mean.
"""

_LEGACY_REDUCTIONS = {"batch", "image"}


class RegionParams(Params):
    mode: Literal["binary", "multiclass", "multilabel"] = Field(
        "binary", description="binary (one foreground channel), multiclass (softmax over channels, "
                              "index targets) or multilabel (independent sigmoid channels).")
    from_logits: bool = Field(True, description="The output holds logits (sigmoid/softmax applied here) "
                                                "rather than probabilities.")
    smooth: float = Field(1.0, ge=0, description="Added to numerator and denominator of the score "
                                                 "(the tutorial's smooth=1); smooth_nr/smooth_dr override it.")
    smooth_nr: Optional[float] = Field(None, ge=0, description="Added to the numerator (MONAI's smooth_nr); "
                                                               "null: smooth.")
    smooth_dr: Optional[float] = Field(None, ge=0, description="Added to the denominator (MONAI's smooth_dr); "
                                                               "null: smooth.")
    ignore_index: Optional[int] = Field(None, description="Target value whose pixels are left out entirely "
                                                          "(for example 255 for unlabelled borders).")
    regions: Literal["batch", "image"] = Field(
        "batch", description="batch: sum each class over the whole batch, then score (tutorial default; "
                             "MONAI batch=True); image: score each image separately.")
    reduction: Literal["mean", "sum", "none"] = Field(
        "mean", description="Mean (weighted by class_weights) or sum over the regions, or none: the "
                            "per-region losses, shape (C,) for regions: batch, (N, C) for regions: image.")
    empty_target: Literal["penalize_fp", "zero", "skip"] = Field(
        "penalize_fp", description="What a region with an empty target contributes: penalize_fp (smoothed "
                                   "formula, predicted foreground costs), zero (loss 0, counted in the mean), "
                                   "skip (left out of the mean).")
    include_background: bool = Field(True, description="false: leave channel 0 (background) out of the "
                                                       "score (multiclass/multilabel; MONAI's option).")
    classes: Optional[list[int]] = Field(None, min_length=1, description="Score only these channels "
                                                                         "(smp's classes); null: all.")
    class_weights: Optional[list[float]] = Field(
        None, min_length=1, description="One weight >= 0 per output channel; the mean becomes "
                                        "sum(w L) / sum(w) (smp's class_weights, MONAI's weight).")
    squared_pred: bool = Field(False, description="Sum p² and t² in the denominator (MONAI's squared_pred).")
    soft_label: bool = Field(False, description="I = (P + T - sum|p - t|) / 2, correct for soft targets "
                                                "(MONAI's soft_label).")
    log_loss: bool = Field(False, description="Loss -log(score) instead of 1 - score (smp's log_loss).")

    @model_validator(mode="before")
    @classmethod
    def _legacy_reduction(cls, data: Any) -> Any:
        """``reduction: batch|image`` (before the mean/sum/none reduction existed) means ``regions``."""
        if isinstance(data, dict) and data.get("reduction") in _LEGACY_REDUCTIONS and "regions" not in data:
            data = {**data, "regions": data["reduction"]}
            del data["reduction"]
        return data

    @model_validator(mode="after")
    def _options_fit(self) -> "RegionParams":
        one_channel = self.mode == "binary"
        if one_channel and not self.include_background:
            raise ValueError("include_background: false needs mode multiclass or multilabel (binary has one channel)")
        if one_channel and (self.classes is not None or self.class_weights is not None):
            raise ValueError("classes and class_weights need mode multiclass or multilabel (binary has one channel)")
        if self.classes is not None:
            if not self.include_background:
                raise ValueError("give classes or include_background: false, not both (classes already chooses)")
            if min(self.classes) < 0 or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be distinct channel indices >= 0, got {self.classes}")
        if self.class_weights is not None and (min(self.class_weights) < 0 or not any(self.class_weights)):
            raise ValueError(f"class_weights must be >= 0 and not all 0, got {self.class_weights}")
        if self.squared_pred and self.soft_label:
            raise ValueError("give squared_pred or soft_label, not both (squared sums are exact for soft labels)")
        if self.reduction == "none" and self.empty_target == "skip":
            raise ValueError("reduction: none cannot leave regions out; use empty_target: zero (skipped regions as 0)")
        return self


class DiceParams(RegionParams):
    __doc__ = """Soft Dice loss: ``1 - (2 * sum(p * t) + smooth_nr) / (sum(p) + sum(t) + smooth_dr)``.

p are the predicted probabilities, t the targets. With the defaults (binary,
smooth 1, regions over the batch) this is exactly the widely copied tutorial
``DiceLoss``, and MONAI's ``DiceLoss(sigmoid=True, batch=True, smooth_nr=s, smooth_dr=s)``
is ``smooth: s``. segmentation_models_pytorch's ``DiceLoss(smooth=s)`` (since 0.4)
scores ``(2 I + 2 s) / (P + T + 2 s)``, so it equals ``smooth: 2s`` with
``empty_target: zero`` (smp sums the batch per class, i.e. ``regions: batch``).
Tests compute both sides of each claim with the peers installed.
""" + _LAYOUT


class IoUParams(RegionParams):
    __doc__ = """Soft IoU (Jaccard) loss: ``1 - (I + smooth_nr) / (sum(p) + sum(t) - I + smooth_dr)``, I = ``sum(p * t)``.

Equals the tutorial ``IoULoss`` with the defaults, and segmentation_models_pytorch's
``JaccardLoss(smooth=s)`` with ``smooth: s, empty_target: zero``. MONAI's
``DiceLoss(jaccard=True, smooth_nr=s, smooth_dr=s)`` scores ``(2 I + s) / (2 U + s)``,
i.e. ``smooth: s/2``. Tests compute both sides of each claim with the peers installed.
""" + _LAYOUT


class TverskyParams(RegionParams):
    __doc__ = """Tversky loss, and focal-Tversky with ``gamma``:
``(1 - (TP + smooth_nr) / (TP + alpha * FP + beta * FN + smooth_dr)) ** gamma`` per region,
TP = ``sum(p * t)``, FP = ``sum(p * (1 - t))``, FN = ``sum((1 - p) * t)``.

alpha = beta = 0.5 is Dice; alpha = beta = 1 is IoU; beta > alpha punishes missed
foreground more (recall-oriented). gamma = 1 is the plain Tversky loss (the tutorial's
``TverskyLoss``; MONAI's ``TverskyLoss`` with the same smooth_nr/smooth_dr); other
values give the focal Tversky loss.

gamma acts on each region's loss before the reduction: ``mean_r(L_r ** gamma)``, the
tutorial's ``FocalTverskyLoss`` and the per-class form of Abraham & Khan (2019) (their
exponent ``1/γ`` is this ``gamma``; they sum over classes where this averages).
segmentation_models_pytorch's
``TverskyLoss(gamma=g)`` raises the mean instead, ``mean_r(L_r) ** g``: the same value
for one region (binary, ``regions: batch``), different with several classes (its value is
``reduction: none``'s mean to the power g). MONAI's ``TverskyLoss`` has no focal
exponent. Tests compute both sides.
""" + _LAYOUT

    alpha: float = Field(0.5, ge=0, description="Weight of false positives.")
    beta: float = Field(0.5, ge=0, description="Weight of false negatives.")
    gamma: float = Field(1.0, gt=0, description="Focal exponent applied to each region's Tversky loss (1: plain Tversky).")


class DiceBCEParams(RegionParams):
    __doc__ = """BCE + Dice: ``bce_weight * CE + dice_weight * Dice``, the tutorial's ``DiceBCELoss``.

CE is binary cross entropy on the logits (stable), averaged over the pixels that
count (``reduction: sum``: summed); in multiclass mode it is the softmax cross entropy.
``pos_weight`` multiplies the positive term of the BCE (torch's ``pos_weight``; one
number, or one per channel in multilabel mode). ``label_smoothing`` e replaces BCE
targets t by ``t (1 - 2e) + e`` (smp's ``smooth_factor``) and multiclass one-hot
targets by ``(1 - e) onehot + e / C`` (torch's). The Dice term is exactly the ``dice``
loss with the same options (``include_background``, ``classes`` and ``class_weights``
act on it only; CE always covers every channel, as in MONAI). ``bce_weight`` and
``dice_weight`` are MONAI's ``lambda_ce`` and ``lambda_dice``: with ``smooth: s`` this equals
MONAI's ``DiceCELoss(smooth_nr=s, smooth_dr=s, batch=True)``, and the sum of smp's
``SoftBCEWithLogitsLoss`` and ``DiceLoss(smooth=s/2)`` with ``empty_target: zero``.

``reduction: none`` (binary and multilabel) returns one value per region, the Dice term's
shape (C,) or (N, C): ``bce_weight * BCE_r + dice_weight * Dice_r`` with ``BCE_r`` the BCE
averaged over region r's pixels, so without ignored pixels and class weights the mean of
the values is the ``mean`` reduction. Multiclass has no ``none``: its softmax cross entropy is one term per
pixel, not one per class (MONAI's ``DiceCELoss`` has no ``none`` either).
""" + _LAYOUT

    reduction: Literal["mean", "sum", "none"] = Field(
        "mean", description="mean: CE over pixels and Dice over regions averaged; sum: both summed (MONAI's); "
                            "none (binary/multilabel): per region, Dice plus the BCE averaged over that "
                            "region's pixels, shape (C,) or (N, C).")
    bce_weight: float = Field(1.0, ge=0, description="Weight of the cross-entropy term (MONAI's lambda_ce).")
    dice_weight: float = Field(1.0, ge=0, description="Weight of the Dice term (MONAI's lambda_dice).")
    pos_weight: Optional[Union[float, list[float]]] = Field(
        None, description="BCE weight of positives (> 0), one number or one per channel; binary/multilabel "
                          "with from_logits only.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Cross-entropy label smoothing e: BCE "
                                                                  "targets t (1 - 2e) + e, softmax (1 - e) onehot + e/C.")

    @model_validator(mode="after")
    def _pos_weight_fits(self) -> "DiceBCEParams":
        if self.reduction == "none":
            if self.mode == "multiclass":
                raise ValueError("reduction: none needs mode binary or multilabel (softmax cross entropy is one "
                                 "term per pixel, not one per class)")
            if not self.include_background or self.classes is not None:
                raise ValueError("reduction: none scores every channel (the BCE covers them all); leave "
                                 "include_background and classes at their defaults")
        if self.pos_weight is None:
            return self
        if self.mode == "multiclass":
            raise ValueError("pos_weight applies to the BCE of mode binary/multilabel, not multiclass")
        if not self.from_logits:
            raise ValueError("pos_weight needs from_logits: true (torch's BCE on probabilities has none)")
        values = self.pos_weight if isinstance(self.pos_weight, list) else [self.pos_weight]
        if not values or min(values) <= 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
        return self


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
    from torchtk.plugins.losses._inputs import checked
    from torchtk.plugins.losses._regions import LOSSES

    return checked(name, LOSSES[name](**params.model_dump()))
