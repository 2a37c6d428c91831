"""MONAI's segmentation losses that torchtk's own ``dice``, ``dice_bce``, ``iou``,
``tversky`` and ``focal`` do not cover, declared without importing monai or torch.

``CATALOG`` is data: component name -> (the ``monai.losses`` class, summary, params
model, renamed arguments). Every param maps to the constructor argument of the same
name (``RENAMED`` lists the exceptions); ``mode`` and ``from_logits`` replace MONAI's
``sigmoid``/``softmax``/``to_onehot_y`` with torchtk's target conventions, so a loss
takes what torchtk's ``dice`` takes (:mod:`torchtk_monai.adapter`). The plugin's tests
check the catalog against monai's classes and constructors.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from torchtk import Component, Params, hookimpl

Weights = Optional[list[Annotated[float, Field(ge=0)]]]


class MonaiParams(Params):
    """What every loss here shares: torchtk's mode and from_logits, MONAI's channel options.

    Shapes (N batch, C channels, 2 or 3 spatial dims): binary: output (N, 1, H, W) or
    (N, H, W) logits, target of the same shape with 0/1 values; multiclass: output
    (N, C, H, W) logits (softmax over C), target (N, H, W) class indices or (N, C, H, W)
    one-hot; multilabel: output (N, C, H, W) logits (a sigmoid per channel), target of the
    same shape. With from_logits false the output holds probabilities."""

    mode: Literal["binary", "multiclass", "multilabel"] = Field(
        "binary", description="binary (one foreground channel, sigmoid), multiclass (softmax over channels, "
                              "index or one-hot targets) or multilabel (a sigmoid per channel).")
    from_logits: bool = Field(True, description="The output holds logits (MONAI's sigmoid/softmax applied) "
                                                "rather than probabilities.")
    include_background: bool = Field(True, description="false: leave channel 0 out (multiclass/multilabel).")
    reduction: Literal["mean", "sum"] = Field("mean", description="Mean or sum over the per-image, per-class losses.")

    @model_validator(mode="after")
    def _channels(self) -> "MonaiParams":
        if self.mode == "binary" and not self.include_background:
            raise ValueError("include_background: false needs mode multiclass or multilabel (binary has one channel)")
        return self


class RegionParams(MonaiParams):
    smooth_nr: float = Field(1e-5, ge=0, description="Added to the numerator of each score (MONAI's default 1e-5).")
    smooth_dr: float = Field(1e-5, ge=0, description="Added to the denominator of each score (MONAI's default 1e-5).")
    batch: bool = Field(False, description="Sum each class over the whole batch before scoring (true) or score "
                                           "each image (false, MONAI's default).")


W_TYPE = Field("square", description="Class weights from the target volume v: square 1/v², simple 1/v, uniform 1.")


class GeneralizedDiceParams(RegionParams):
    """Generalized Dice loss (Sudre et al., 2017; monai.losses.GeneralizedDiceLoss): Dice
    with each class weighted by the inverse (squared) volume of its target, so small
    structures count as much as large ones."""

    w_type: Literal["square", "simple", "uniform"] = W_TYPE
    soft_label: bool = Field(False, description="Intersection formula correct for soft targets (MONAI's soft_label).")


class FocalPart(RegionParams):
    gamma: float = Field(2.0, ge=0, description="Focal exponent of the focal term.")
    weight: Weights = Field(None, min_length=1, description="One weight >= 0 per channel for the focal term (and "
                                                            "Dice in DiceFocal); null: equal.")
    lambda_focal: float = Field(1.0, ge=0, description="Weight of the focal term.")


class DiceFocalParams(FocalPart):
    """Dice + focal loss (monai.losses.DiceFocalLoss): lambda_dice * Dice + lambda_focal * focal,
    the focal term with a sigmoid (binary, multilabel) or softmax (multiclass)."""

    squared_pred: bool = Field(False, description="Square the prediction and target in the Dice denominator.")
    jaccard: bool = Field(False, description="Jaccard (IoU) form of the Dice term.")
    lambda_dice: float = Field(1.0, ge=0, description="Weight of the Dice term.")
    alpha: Optional[float] = Field(None, ge=0, le=1, description="Focal alpha: weight of positives (1 - alpha for "
                                                                 "negatives); null: none.")


class GeneralizedDiceFocalParams(FocalPart):
    """Generalized Dice + focal loss (monai.losses.GeneralizedDiceFocalLoss):
    lambda_gdl * generalized Dice + lambda_focal * focal."""

    w_type: Literal["square", "simple", "uniform"] = W_TYPE
    lambda_gdl: float = Field(1.0, ge=0, description="Weight of the generalized Dice term.")


class ClDiceParams(MonaiParams):
    """Soft clDice (Shit et al., 2021; monai.losses.SoftclDiceLoss): Dice between each mask
    and the other's soft skeleton, which keeps thin tubular structures (vessels, roads)
    connected. Needs 2-D or 3-D images."""

    iterations: int = Field(3, ge=0, le=100, description="Soft-skeleton iterations (MONAI's iter_): about the "
                                                          "largest structure radius in pixels.")
    smooth_nr: float = Field(1.0, ge=0, description="Added to the numerators (MONAI's default 1).")
    smooth_dr: float = Field(1.0, ge=0, description="Added to the denominators (MONAI's default 1).")
    smooth: float = Field(1e-4, gt=0, description="Added to the denominator of the harmonic mean (MONAI's smooth).")


class DiceClDiceParams(ClDiceParams):
    """Soft Dice + soft clDice (monai.losses.SoftDiceclDiceLoss): (1 - alpha) * Dice + alpha * clDice."""

    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the clDice term (1 - alpha for Dice).")


# name -> (monai.losses class, summary, params model)
CATALOG = {
    "generalized_dice": ("GeneralizedDiceLoss", "Generalized Dice: classes weighted by inverse target volume "
                                                "(MONAI).", GeneralizedDiceParams),
    "dice_focal": ("DiceFocalLoss", "Dice + focal loss (MONAI).", DiceFocalParams),
    "generalized_dice_focal": ("GeneralizedDiceFocalLoss", "Generalized Dice + focal loss (MONAI).",
                               GeneralizedDiceFocalParams),
    "cldice": ("SoftclDiceLoss", "Soft clDice: topology-preserving loss for thin structures (MONAI).",
               ClDiceParams),
    "dice_cldice": ("SoftDiceclDiceLoss", "Soft Dice + soft clDice (MONAI).", DiceClDiceParams),
}
RENAMED = {"iterations": "iter_"}  # param -> monai's constructor argument
ALIASES = {"generalized_dice": ("gdl",), "cldice": ("soft_cldice",), "dice_cldice": ("soft_dice_cldice",)}


@hookimpl
def register_components(register):
    for name, (_, summary, params) in CATALOG.items():
        register(Component("loss", name, summary, params=params, aliases=ALIASES.get(name, ())))


@hookimpl
def make_loss(name, params):
    from torchtk_monai.adapter import build

    return build(name, CATALOG[name][0], params)
