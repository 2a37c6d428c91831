"""Classification losses for imbalanced and noisy labels: ``focal``, ``batch_focal``, ``sce``.

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

    @model_validator(mode="after")
    def _alpha_fits_mode(self) -> "FocalParams":
        if isinstance(self.alpha, list):
            if self.mode != "multiclass":
                raise ValueError("alpha may be a list of per-class weights only with mode: multiclass")
            if any(a < 0 for a in self.alpha):
                raise ValueError("alpha weights must be >= 0")
        elif self.alpha is not None and self.mode != "multiclass" and not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] for mode {self.mode}, got {self.alpha}")
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
    import torch
    import torch.nn.functional as F

    from torchtk.plugins.losses._focal import SigmoidFocal
    from torchtk.plugins.losses._inputs import class_indices, same_shape

    mode, gamma, reduction, ignore = params.mode, params.gamma, params.reduction, params.ignore_index
    alpha = params.alpha
    name = f"focal ({mode})"
    alpha_by_device: dict = {}

    def reduce(loss: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
        if valid is not None:
            loss = loss * valid
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        return loss.mean() if valid is None else loss.sum() / valid.sum().clamp_min(1)

    def sigmoid_focal(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if mode == "binary":
            output, target = same_shape(name, output, target)
            target = target.reshape(output.shape)
        elif output.shape != target.shape:
            from torchtk.plugins.losses._inputs import fail

            raise fail(name, output, target, "a target of the output's shape (N, C, ...)")
        valid = None
        if ignore is not None:
            keep = target != ignore
            valid = keep.to(output.dtype)
            target = target.masked_fill(~keep, 0)
        target = target.to(output.dtype)
        if params.from_logits:
            loss = SigmoidFocal.apply(output, target, alpha, gamma)
        else:
            ce = F.binary_cross_entropy(output, target, reduction="none")
            p_t = output * target + (1 - output) * (1 - target)
            loss = ce * (1 - p_t).pow(gamma) if gamma else ce
            if alpha is not None:
                loss = loss * (alpha * target + (1 - alpha) * (1 - target))
        return reduce(loss, valid)

    def class_weights(like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in alpha_by_device:
            alpha_by_device[key] = torch.tensor(alpha, device=like.device, dtype=like.dtype)
        return alpha_by_device[key]

    def softmax_focal(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        indices = class_indices(name, output, target)
        if isinstance(alpha, list) and len(alpha) != output.shape[1]:
            from torchtk.plugins.losses._inputs import LossInputError

            raise LossInputError(f"loss {name!r}: alpha has {len(alpha)} class weights but the output has "
                                 f"{output.shape[1]} classes (shape {tuple(output.shape)})")
        if params.from_logits:
            log_prob = F.log_softmax(output, 1)
        else:
            log_prob = output.clamp_min(torch.finfo(output.dtype).tiny).log()
        if not indices:
            target = target.to(log_prob.dtype)
            factor = (1 - log_prob.exp()).clamp_min(0).pow(gamma) if gamma else 1
            per_class = -factor * log_prob * target
            if isinstance(alpha, list):
                per_class = per_class * class_weights(log_prob).reshape(1, -1, *[1] * (output.ndim - 2))
            elif alpha is not None:
                per_class = per_class * alpha
            return reduce(per_class.sum(1), None)
        valid = None
        if ignore is not None:
            keep = target != ignore
            valid = keep.to(log_prob.dtype)
            target = target.masked_fill(~keep, 0)
        log_p_t = log_prob.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -log_p_t
        if gamma:
            rest = 1 - log_p_t.exp()
            # p_t can round to a hair above 1; only a fractional power of that is NaN
            loss = loss * (rest if float(gamma).is_integer() else rest.clamp_min(0)).pow(gamma)
        if isinstance(alpha, list):
            loss = loss * class_weights(log_prob)[target]
        elif alpha is not None:
            loss = loss * alpha
        return reduce(loss, valid)

    focal = softmax_focal if mode == "multiclass" else sigmoid_focal
    focal.__name__ = "focal"
    return focal


def batch_focal_loss(params: BatchFocalParams):
    import torch
    import torch.nn.functional as F

    from torchtk.plugins.losses._inputs import same_shape

    alpha, gamma = params.alpha, params.gamma
    bce = F.binary_cross_entropy_with_logits if params.from_logits else F.binary_cross_entropy

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


_FACTORIES = {"focal": focal_loss, "batch_focal": batch_focal_loss, "sce": symmetric_cross_entropy}


@hookimpl
def register_components(register):
    register(Component("loss", "focal", "Focal loss (RetinaNet form), binary, multilabel or multiclass.",
                       params=FocalParams, aliases=("sigmoid_focal",)))
    register(Component("loss", "batch_focal", "The tutorial's focal factor applied to the batch-mean BCE.",
                       params=BatchFocalParams))
    register(Component("loss", "sce", "Symmetric cross entropy (CE + reverse CE) for noisy labels.",
                       params=SCEParams, aliases=("symmetric_cross_entropy",)))


@hookimpl
def make_loss(name, params):
    return _FACTORIES[name](params)
