"""The torch side of the region losses (dice, dice_bce, iou, tversky).

Imported by ``torchtk.plugins.losses.segmentation`` when one of them is built, never
when the catalog is listed. Every region loss is a function of three sums per region
(a region is one class over the whole batch, or one class of one image):

    I = sum(p * t)     P = sum(p)     T = sum(t)

so true positives are ``I``, false positives ``P - I`` and false negatives ``T - I``.
:class:`RegionSums` computes them with a hand-written backward (one fused kernel
instead of autograd's chain), and all sums run in float32 (float64 for float64 inputs)
with autocast disabled, so a 512x512 float16 mask cannot overflow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchtk.plugins.losses._inputs import LossInputError, class_indices, same_shape, shape_text


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else is summed in float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for the loss arithmetic, if it is on for this tensor's device."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class RegionSums(torch.autograd.Function):
    """``(I, P, T)`` per region from probabilities ``p`` and targets ``t``.

    ``t`` must already be zero where ``mask`` is zero. With ``dims=None`` both inputs are
    1-D and everything is one region (``I`` is then a dot product, no temporary).
    Backward: ``dL/dp = dL/dI * t + dL/dP * mask`` and ``dL/dt = dL/dI * p + dL/dT``,
    two elementwise kernels instead of autograd's product, sum and accumulation chain.
    """

    @staticmethod
    def forward(ctx: Any, prob: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor],
                dims: Optional[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if dims is None:
            inter, pred, true = torch.dot(prob, target), prob.sum(), target.sum()
        else:
            inter = (prob * target).sum(dims)
            pred = (prob if mask is None else prob * mask).sum(dims)
            true = target.sum(dims)
        ctx.save_for_backward(prob, target, mask)
        ctx.dims = dims
        return inter, pred, true

    @staticmethod
    def backward(ctx: Any, g_inter: torch.Tensor, g_pred: torch.Tensor, g_true: torch.Tensor) -> tuple:
        prob, target, mask = ctx.saved_tensors
        dims = ctx.dims
        if dims is None:
            def spread(g: torch.Tensor) -> torch.Tensor:
                return g
        else:
            shape = [1 if d in dims else s for d, s in enumerate(prob.shape)]

            def spread(g: torch.Tensor) -> torch.Tensor:
                return g.reshape(shape)
        grad_prob = grad_target = None
        if ctx.needs_input_grad[0]:
            # (t * gI) + gP as two kernels: addcmul with broadcast scalars is 2-3x slower on CPU
            grad_prob = target * spread(g_inter)
            grad_prob = grad_prob.add_(spread(g_pred)) if mask is None else grad_prob.addcmul_(mask, spread(g_pred))
            grad_prob = grad_prob.expand_as(prob)
        if ctx.needs_input_grad[1]:
            grad_target = (prob * spread(g_inter)).add_(spread(g_true)).expand_as(target)
        return grad_prob, grad_target, None, None


@dataclass
class Prepared:
    """A batch in the layout every region loss uses: ``(N, C, S)`` with S the pixels."""

    logits: torch.Tensor          # the output in compute dtype (logits, or probabilities)
    prob: torch.Tensor            # probabilities
    target: torch.Tensor          # per-class targets, zero at ignored pixels
    mask: Optional[torch.Tensor]  # 1 at pixels that count, 0 at ignored ones (None: all count)
    indices: Optional[torch.Tensor] = None  # multiclass class indices (N, S), ignore_index kept


class RegionLoss(nn.Module):
    """Shared machinery of the region losses: layout, activation, ``ignore_index``,
    region sums, and the ``empty_target`` policy. Subclasses give ``region_loss``."""

    loss_name = "region"

    def __init__(self, mode: str = "binary", from_logits: bool = True, smooth: float = 1.0,
                 ignore_index: Optional[int] = None, reduction: str = "batch",
                 empty_target: str = "penalize_fp") -> None:
        super().__init__()
        self.mode, self.from_logits, self.smooth = mode, from_logits, smooth
        self.ignore_index, self.reduction, self.empty_target = ignore_index, reduction, empty_target

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, from_logits={self.from_logits}, smooth={self.smooth}, "
                f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"empty_target={self.empty_target!r}")

    # -- layout ---------------------------------------------------------------------

    def prepare(self, output: torch.Tensor, target: torch.Tensor) -> Prepared:
        dtype = compute_dtype(output)
        name = f"{self.loss_name} ({self.mode})"
        if self.mode == "multiclass":
            if class_indices(name, output, target):
                n, c = output.shape[:2]
                x = output.to(dtype).reshape(n, c, -1)
                t = target.reshape(n, -1)
                indices = t
                if self.ignore_index is not None:
                    valid = t != self.ignore_index
                    mask = valid.unsqueeze(1).to(dtype)
                    onehot = torch.zeros_like(x).scatter_(1, t.masked_fill(~valid, 0).unsqueeze(1), mask)
                else:
                    mask = None
                    onehot = torch.zeros_like(x).scatter_(1, t.unsqueeze(1), 1.0)
                prob = torch.softmax(x, 1) if self.from_logits else x
                return Prepared(x, prob, onehot, mask, indices)
            n, c = output.shape[:2]
            x = output.to(dtype).reshape(n, c, -1)
            prob = torch.softmax(x, 1) if self.from_logits else x
            return Prepared(x, prob, target.to(dtype).reshape(n, c, -1), None)
        if self.mode == "multilabel":
            if output.shape != target.shape or output.ndim < 2:
                raise LossInputError(
                    f"loss {name!r}: output shape {shape_text(output)} and target shape {shape_text(target)} "
                    "do not fit; expected a target of the output's shape (N, C, ...)")
            n, c = output.shape[:2]
        else:
            output, target = same_shape(name, output, target)
            n, c = (output.shape[0] if output.ndim else 1), 1
        x = output.to(dtype).reshape(n, c, -1)
        t = target.reshape(n, c, -1)
        mask = None
        if self.ignore_index is not None:
            valid = t != self.ignore_index
            mask = valid.to(dtype)
            t = t.masked_fill(~valid, 0)
        t = t.to(dtype)
        prob = torch.sigmoid(x) if self.from_logits else x
        return Prepared(x, prob, t, mask)

    def sums(self, batch: Prepared) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prob, target, mask = batch.prob, batch.target, batch.mask
        if self.reduction == "batch" and mask is None and prob.shape[1] == 1:
            return RegionSums.apply(prob.reshape(-1), target.reshape(-1), None, None)
        return RegionSums.apply(prob, target, mask, (0, 2) if self.reduction == "batch" else (2,))

    # -- scores ---------------------------------------------------------------------

    def ratio(self, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        """``num / den``; a region with nothing predicted and nothing true (possible only
        with ``smooth=0``) scores 1, a perfect empty prediction."""
        if self.smooth > 0:
            return num / den
        return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.ones_like(den))

    def region_loss(self, inter: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reduce(self, loss: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        if self.empty_target == "penalize_fp":
            return loss if loss.ndim == 0 else loss.mean()
        present = (true > 0).to(loss.dtype)
        if self.empty_target == "zero":
            return (loss * present).mean()
        return (loss * present).sum() / present.sum().clamp_min(1)

    def fast_sums(self, output: torch.Tensor, target: torch.Tensor) -> Optional[tuple]:
        """The common case (binary, whole batch, float32 tensors of one shape, no autocast)
        without the general layout code: the same arithmetic, less Python per call."""
        if (self.mode != "binary" or self.reduction != "batch" or self.ignore_index is not None
                or output.dtype != torch.float32 or target.dtype != torch.float32 or output.shape != target.shape
                or torch.is_autocast_enabled(output.device.type)):
            return None
        prob = torch.sigmoid(output.reshape(-1)) if self.from_logits else output.reshape(-1)
        return RegionSums.apply(prob, target.reshape(-1), None, None)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sums = self.fast_sums(output, target)
        if sums is not None:
            return self.reduce(self.region_loss(*sums), sums[2])
        with full_precision(output):
            batch = self.prepare(output, target)
            inter, pred, true = self.sums(batch)
            return self.reduce(self.region_loss(inter, pred, true), true)


class DiceLoss(RegionLoss):
    """``1 - (2 I + smooth) / (P + T + smooth)`` per region."""

    loss_name = "dice"

    def region_loss(self, inter, pred, true):
        s = self.smooth
        return 1 - self.ratio(2 * inter + s, pred + true + s)


class IoULoss(RegionLoss):
    """``1 - (I + smooth) / (P + T - I + smooth)`` per region."""

    loss_name = "iou"

    def region_loss(self, inter, pred, true):
        s = self.smooth
        return 1 - self.ratio(inter + s, pred + true - inter + s)


class TverskyLoss(RegionLoss):
    """``(1 - (TP + s) / (TP + alpha FP + beta FN + s)) ** gamma`` per region."""

    loss_name = "tversky"

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, " + super().extra_repr()

    def region_loss(self, inter, pred, true):
        s, a, b = self.smooth, self.alpha, self.beta
        den = (1 - a - b) * inter + a * pred + b * true + s
        loss = 1 - self.ratio(inter + s, den)
        if self.gamma == 1:
            return loss
        floor = 0.0 if self.gamma >= 1 else torch.finfo(loss.dtype).eps
        return loss.clamp_min(floor).pow(self.gamma)


class DiceBCELoss(DiceLoss):
    """``bce_weight * BCE + dice_weight * Dice``; cross entropy in multiclass mode."""

    loss_name = "dice_bce"

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, " + super().extra_repr()

    def cross_entropy(self, batch: Prepared) -> torch.Tensor:
        x, t, mask = batch.logits, batch.target, batch.mask
        if self.mode != "multiclass":
            if self.from_logits:
                value = F.binary_cross_entropy_with_logits(x, t, weight=mask, reduction="sum" if mask is not None else "mean")
            else:
                value = F.binary_cross_entropy(x, t, weight=mask, reduction="sum" if mask is not None else "mean")
            return value if mask is None else value / mask.sum().clamp_min(1)
        log_prob = F.log_softmax(x, 1) if self.from_logits else x.clamp_min(torch.finfo(x.dtype).tiny).log()
        if batch.indices is None:
            return -(t * log_prob).sum(1).mean()
        ignore = self.ignore_index if self.ignore_index is not None else -100
        value = F.nll_loss(log_prob, batch.indices, ignore_index=ignore, reduction="sum")
        count = batch.indices.numel() if batch.mask is None else batch.mask.sum().clamp_min(1)
        return value / count

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with full_precision(output):
            batch = self.prepare(output, target)
            inter, pred, true = self.sums(batch)
            dice = self.reduce(self.region_loss(inter, pred, true), true)
            return self.bce_weight * self.cross_entropy(batch) + self.dice_weight * dice


LOSSES = {"dice": DiceLoss, "iou": IoULoss, "tversky": TverskyLoss, "dice_bce": DiceBCELoss}
