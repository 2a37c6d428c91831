"""Classification losses for imbalanced and noisy labels: ``focal``, ``soft_bce``, ``batch_focal``, ``sce``.

Function-style losses: each factory imports torch, closes over the validated params and
returns a plain ``(output, target) -> scalar`` function.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from torchtk import Component, Params, hookimpl


class FocalParams(Params):
    """Focal loss (Lin et al. 2017, RetinaNet): ``-alpha_t * (1 - p_t) ** gamma * log(p_t)`` per element.

    Down-weights easy, well-classified elements so training focuses on the hard ones.
    p_t is the predicted probability of the true label; alpha_t is ``alpha`` for
    positives and ``1 - alpha`` for negatives.

    * ``binary`` / ``multilabel``: a sigmoid per element; target of the output's shape
      with values in [0, 1]. With logits this equals
      ``torchvision.ops.sigmoid_focal_loss(reduction="mean")`` (and smp's/MONAI's
      ``FocalLoss`` for hard labels), with a faster fused backward.
    * ``multiclass``: softmax over dim 1 of output (N, C, ...); target (N, ...) class
      indices (or one-hot of the output's shape). ``alpha`` is then either one number
      multiplying every term, or a list of C per-class weights; with ``gamma: 0`` and no
      alpha this is exactly ``cross_entropy``.

    The tutorial's values (``from_logits: false, alpha: 0.75, gamma: 2``): p = [0.9, 0.1]
    against y = [1, 0] gives 0.0005; p = [0.5, 0.5] against y = [1, 0] gives 0.0866.

    smp's and pytorch-toolbelt's options: ``reduced_threshold`` r replaces the factor by
    ``((1 - p_t) / r) ** gamma``, and by 1 where ``p_t < r``; ``normalized`` divides every
    term by ``sum(factor)`` over the elements that count before the reduction (so
    ``reduction: sum`` gives ``sum(factor * CE) / sum(factor)``; smp's mean divides that
    once more by the element count). Both equal smp's ``FocalLoss`` (tests compute both).
    ``class_weights`` (multilabel) and ``include_background`` follow the region losses.

    Multiclass against MONAI's ``FocalLoss(use_softmax=True)``: MONAI's mean runs over
    classes as well as pixels (its value is this loss divided by C), its scalar ``alpha``
    weighs the background ``1 - alpha`` and every other class ``alpha`` (here: ``alpha``
    as the list ``[1 - a, a, ..., a]``), and its ``include_background=False`` drops
    channel 0 *before* the softmax, so the background logit leaves the model's
    probabilities altogether. Here the softmax always covers every class (as MONAI's own
    ``DiceLoss(softmax=True)`` does, and as cross entropy does) and
    ``include_background: false`` leaves out the terms of background pixels, which still
    count in the mean. MONAI's value is this loss on ``output[:, 1:]``, with background
    pixels ignored, summed and divided by ``N (C - 1)`` times the pixels. Tests compute all
    three relations.
    """

    mode: Literal["binary", "multiclass", "multilabel"] = Field(
        "binary", description="binary/multilabel: sigmoid per element; multiclass: softmax over dim 1.")
    alpha: Optional[Union[float, list[float]]] = Field(
        0.25, description="Positive-class weight in [0, 1] (binary/multilabel); in multiclass mode a "
                          "number multiplying every term or a list of per-class weights; null: no weighting.")
    gamma: float = Field(2.0, ge=0, description="Focusing exponent; 0 gives plain (alpha-weighted) cross entropy.")
    from_logits: bool = Field(True, description="The output holds logits (true) or probabilities (false).")
    ignore_index: Optional[int] = Field(None, description="Target value whose elements are left out of the loss and the mean.")
    reduction: Literal["mean", "sum", "none"] = Field("mean", description="Mean or sum over the elements, or none "
                                                                          "(per-element losses, for custom weighting).")
    include_background: bool = Field(True, description="false: leave channel 0 out (multilabel: its sigmoid "
                                                       "terms; multiclass: the terms of pixels of class 0).")
    class_weights: Optional[list[float]] = Field(
        None, min_length=1, description="multilabel: one weight >= 0 per channel multiplying its terms; the mean "
                                        "becomes sum(w l) / sum(w) over the elements (smp's rule).")
    normalized: bool = Field(False, description="Divide by the sum of the focal factors (smp's normalized focal "
                                                "loss, arXiv 1909.07829), then reduce.")
    reduced_threshold: Optional[float] = Field(
        None, gt=0, le=1, description="Reduced focal loss (arXiv 1903.01347): factor ((1 - p_t) / r) ** gamma, "
                                      "and 1 where p_t < r; null: the plain factor.")

    @model_validator(mode="after")
    def _alpha_fits_mode(self) -> "FocalParams":
        if not self.include_background and self.mode == "binary":
            raise ValueError("include_background: false needs mode multiclass or multilabel (binary has one channel)")
        if self.class_weights is not None:
            if self.mode != "multilabel":
                raise ValueError("class_weights needs mode multilabel (multiclass: give alpha as a list of "
                                 "per-class weights)")
            if min(self.class_weights) < 0 or not any(self.class_weights):
                raise ValueError(f"class_weights must be >= 0 and not all 0, got {self.class_weights}")
        if isinstance(self.alpha, list):
            if self.mode != "multiclass":
                raise ValueError("alpha may be a list of per-class weights only with mode: multiclass")
            if any(a < 0 for a in self.alpha):
                raise ValueError("alpha weights must be >= 0")
        elif self.alpha is not None and self.mode != "multiclass" and not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] for mode {self.mode}, got {self.alpha}")
        return self


class SoftBCEParams(Params):
    """Binary cross entropy on logits with label smoothing and ``ignore_index``
    (smp's and pytorch-toolbelt's ``SoftBCEWithLogitsLoss``):
    ``-(w_p t' log s(x) + (1 - t') log(1 - s(x)))`` per element, s the sigmoid,
    ``t' = t (1 - 2e) + e`` (1 becomes 1 - e, 0 becomes e) and ``w_p`` the ``pos_weight``.

    Output and target have one shape (a channel axis of size 1 may be left out). Elements
    whose target is ``ignore_index`` are left out of the loss and of the mean (smp zeroes
    them but still divides by every element: its mean is this loss's ``sum`` divided by
    the element count).
    """

    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Label smoothing e: targets t become "
                                                                  "t (1 - 2e) + e (smp's smooth_factor).")
    ignore_index: Optional[int] = Field(None, description="Target value whose elements are left out of the loss "
                                                          "and the mean (for example -100 or 255).")
    pos_weight: Optional[Union[float, list[float]]] = Field(
        None, description="Weight (> 0) of the positive term: one number, or one per channel (dim 1).")
    reduction: Literal["mean", "sum", "none"] = Field("mean", description="Mean over the kept elements, sum, "
                                                                          "or none (per element, 0 where ignored).")

    @model_validator(mode="after")
    def _pos_weight_positive(self) -> "SoftBCEParams":
        values = self.pos_weight if isinstance(self.pos_weight, list) else [self.pos_weight]
        if self.pos_weight is not None and (not values or min(values) <= 0):
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
        return self


class BatchFocalParams(Params):
    """The "batch" focal loss of the popular PyTorch loss tutorial:
    ``alpha * (1 - exp(-BCE)) ** gamma * BCE`` where BCE is the *mean* binary cross
    entropy of the whole batch.

    Unlike ``focal`` the focal factor is applied once, to the batch-mean BCE, not per
    element, so it rescales the whole batch's loss instead of re-weighting hard examples.
    Provided for users reproducing that code; prefer ``focal`` otherwise. Output and
    target have one shape (a channel axis of size 1 may be left out).
    """

    alpha: float = Field(0.8, ge=0, description="Multiplier of the loss (the tutorial's ALPHA).")
    gamma: float = Field(2.0, ge=0, description="Exponent of the batch-level focal factor (the tutorial's GAMMA).")
    from_logits: bool = Field(True, description="The output holds logits (the tutorial applies a sigmoid) or probabilities.")


class SCEParams(Params):
    """Symmetric cross entropy (Wang et al. 2019, "Symmetric Cross Entropy for Robust
    Learning with Noisy Labels"): ``alpha * CE + beta * RCE``.

    RCE is the reverse cross entropy ``-sum_k p_k log(q_k)``, with p the softmax
    prediction clamped to [1e-7, 1] and q the one-hot label clamped to [1e-4, 1] as in
    the paper's reference code, so RCE = ``-log(1e-4) * sum_{k != y} p_k``. Output
    (N, C, ...) logits, target (N, ...) class indices. The paper uses alpha 0.1, beta 1
    on CIFAR-10 and alpha 6, beta 0.1 on CIFAR-100.
    """

    alpha: float = Field(0.1, ge=0, description="Weight of the cross-entropy term.")
    beta: float = Field(1.0, ge=0, description="Weight of the reverse cross-entropy term.")
    num_classes: Optional[int] = Field(None, ge=2, description="Number of classes; null: taken from the output's dim 1.")


def focal_loss(params: FocalParams):
    from torchtk.plugins.losses._focal import build_focal

    return build_focal(params)


def soft_bce_loss(params: SoftBCEParams):
    import torch

    from torchtk.plugins.losses._inputs import LossInputError, same_shape
    from torchtk.plugins.losses._logistic import BCEWithLogits, binary_cross_entropy_with_logits, fast_here

    e, ignore, reduction = params.label_smoothing, params.ignore_index, params.reduction
    pos_weights: dict = {}
    # the defaults (and label smoothing) on CPU: straight to the one-node BCE, no option handling per call
    direct = ignore is None and params.pos_weight is None

    def pos_weight(like: torch.Tensor) -> Optional[torch.Tensor]:
        if params.pos_weight is None:
            return None
        key = (like.device, like.dtype)
        if key not in pos_weights:
            pos_weights[key] = torch.tensor(params.pos_weight, device=like.device, dtype=like.dtype)
        weight = pos_weights[key]
        if weight.ndim:
            if like.ndim < 2 or like.shape[1] != weight.numel():
                raise LossInputError(f"loss 'soft_bce': pos_weight has {weight.numel()} values but the output "
                                     f"shape {tuple(like.shape)} has no dim 1 of that size")
            weight = weight.reshape(1, -1, *[1] * (like.ndim - 2))
        return weight

    def soft_bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if direct and output.shape == target.shape and output.dtype is target.dtype and fast_here(output):
            return BCEWithLogits.apply(output, target * (1 - 2 * e) + e if e else target, None, reduction)
        output, target = same_shape("soft_bce", output, target)
        target = target.reshape(output.shape)
        keep = None
        if ignore is not None:
            keep = target != ignore
            target = target.masked_fill(~keep, 0)
            keep = keep.to(output.dtype)
        target = target.to(output.dtype)
        if e:
            target = target * (1 - 2 * e) + e
        plain_mean = reduction == "mean" and keep is None  # torch's own mean: no extra division node
        loss = binary_cross_entropy_with_logits(output, target, weight=keep, pos_weight=pos_weight(output),
                                                reduction="mean" if plain_mean else
                                                ("none" if reduction == "none" else "sum"))
        if reduction != "mean" or plain_mean:
            return loss
        return loss / (output.numel() if keep is None else keep.sum().clamp_min(1))

    return soft_bce


def batch_focal_loss(params: BatchFocalParams):
    import torch
    import torch.nn.functional as F

    from torchtk.plugins.losses._inputs import same_shape
    from torchtk.plugins.losses._logistic import binary_cross_entropy_with_logits

    alpha, gamma = params.alpha, params.gamma
    bce = binary_cross_entropy_with_logits if params.from_logits else F.binary_cross_entropy

    def batch_focal(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = same_shape("batch_focal", output, target)
        mean_bce = bce(output, target.reshape(output.shape).to(output.dtype))
        return alpha * (1 - torch.exp(-mean_bce)) ** gamma * mean_bce

    return batch_focal


def symmetric_cross_entropy(params: SCEParams):
    import math

    import torch
    import torch.nn.functional as F

    from torchtk.plugins.losses._inputs import LossInputError, class_indices

    alpha, beta, num_classes = params.alpha, params.beta, params.num_classes
    reverse_scale = -math.log(1e-4)

    def sce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not class_indices("sce", output, target):
            raise LossInputError(f"loss 'sce': target must hold class indices of shape "
                                 f"{tuple(output.shape[:1] + output.shape[2:])}, got {tuple(target.shape)}")
        if num_classes is not None and output.shape[1] != num_classes:
            raise LossInputError(f"loss 'sce': num_classes is {num_classes} but the output has "
                                 f"{output.shape[1]} classes (shape {tuple(output.shape)})")
        ce = F.cross_entropy(output, target)
        prob = torch.softmax(output, 1).clamp(1e-7, 1.0)
        others = prob.sum(1) - prob.gather(1, target.unsqueeze(1)).squeeze(1)
        return alpha * ce + beta * reverse_scale * others.mean()

    return sce


_FACTORIES = {"focal": focal_loss, "soft_bce": soft_bce_loss, "batch_focal": batch_focal_loss, "sce": symmetric_cross_entropy}


@hookimpl
def register_components(register):
    register(Component("loss", "focal", "Focal loss (RetinaNet form), binary, multilabel or multiclass.",
                       params=FocalParams, aliases=("sigmoid_focal",)))
    register(Component("loss", "soft_bce", "BCE on logits with label smoothing and ignore_index (smp's SoftBCE).",
                       params=SoftBCEParams, aliases=("soft_bce_with_logits",), extras={"prediction": "sigmoid"}))
    register(Component("loss", "batch_focal", "The tutorial's focal factor applied to the batch-mean BCE.",
                       params=BatchFocalParams, extras={"prediction": "sigmoid"}))
    register(Component("loss", "sce", "Symmetric cross entropy (CE + reverse CE) for noisy labels.",
                       params=SCEParams, aliases=("symmetric_cross_entropy",), extras={"prediction": "softmax"}))


@hookimpl
def make_loss(name, params):
    from torchtk.plugins.losses._inputs import checked

    return checked(name, _FACTORIES[name](params))
