"""Classification losses written for imbalanced data."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from torchtk import Component, Params, hookimpl


class FocalParams(Params):
    """Focal loss (Lin et al., RetinaNet): ``-alpha_t (1 - p_t)**gamma log(p_t)`` per element.

    Down-weights easy examples so training focuses on hard ones. With logits this
    equals ``torchvision.ops.sigmoid_focal_loss(reduction="mean")``.
    """

    alpha: Optional[float] = Field(0.25, ge=0, le=1, description="Weight of the positive class; null disables class weighting.")
    gamma: float = Field(2.0, ge=0, description="Focusing exponent; 0 gives plain (alpha-weighted) BCE.")
    from_logits: bool = Field(True, description="Inputs are logits (true) or probabilities (false).")
    reduction: Literal["mean", "sum", "none"] = Field("mean", description="How per-element losses are reduced.")


def focal_loss(params: FocalParams):
    import torch
    import torch.nn.functional as F

    alpha, gamma = params.alpha, params.gamma

    def focal(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(output.dtype)
        if params.from_logits:
            ce = F.binary_cross_entropy_with_logits(output, target, reduction="none")
            p = torch.sigmoid(output)
        else:
            ce = F.binary_cross_entropy(output, target, reduction="none")
            p = output
        p_t = p * target + (1 - p) * (1 - target)
        loss = ce * (1 - p_t).pow(gamma) if gamma else ce
        if alpha is not None:
            loss = loss * (alpha * target + (1 - alpha) * (1 - target))
        if params.reduction == "mean":
            return loss.mean()
        return loss.sum() if params.reduction == "sum" else loss

    return focal


_FACTORIES = {"focal": focal_loss}


@hookimpl
def register_components(register):
    register(Component("loss", "focal", "Focal loss for imbalanced binary targets (RetinaNet form).",
                       params=FocalParams))


@hookimpl
def make_loss(name, params):
    return _FACTORIES[name](params)
