"""The elementwise sigmoid focal loss with a hand-written backward (torch code,
imported when ``focal`` is built).

Forward and value are exactly ``torchvision.ops.sigmoid_focal_loss``; the backward is
the closed form, so one fused pass replaces autograd's chain of a dozen elementwise
kernels (torchvision's path is the slowest of the peers).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from torchtk.plugins.losses._inputs import LossInputError, class_indices, fail, same_shape
from torchtk.plugins.losses._logistic import bce_elementwise


class SigmoidFocal(torch.autograd.Function):
    """``alpha_t * (1 - p_t) ** gamma * BCE(x, t)`` per element, x logits, t in [0, 1].

    With ``m = 1 - p_t = p + t - 2 p t`` and ``p = sigmoid(x)``:
    ``dL/dx = alpha_t * ((p - t) * m**g + BCE * g * m**(g-1) * (1 - 2t) * p * (1 - p))``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor, alpha: Optional[float], gamma: float) -> torch.Tensor:
        p = torch.sigmoid(x)
        ce = bce_elementwise(x, t)
        one_minus_2t = 1 - 2 * t
        m = torch.addcmul(t, p, one_minus_2t)
        if gamma == 0:
            modulator = None
            loss = ce
        elif gamma == 1:
            modulator = m
            loss = ce * m
        elif gamma == 2:
            modulator = m * m
            loss = ce * modulator
        else:
            modulator = m.pow(gamma)
            loss = ce * modulator
        weight = None
        if alpha is not None:
            weight = (2 * alpha - 1) * t + (1 - alpha)
            loss = loss * weight
        ctx.save_for_backward(p, t, ce, m, one_minus_2t, modulator, weight)
        ctx.gamma = gamma
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        p, t, ce, m, one_minus_2t, modulator, weight = ctx.saved_tensors
        gamma = ctx.gamma
        grad_x = p - t
        if gamma != 0:
            grad_x = grad_x * modulator
            slope = p * (1 - p) * one_minus_2t * ce
            if gamma == 1:
                grad_x = grad_x + slope
            elif gamma == 2:
                grad_x = grad_x.addcmul_(slope, m, value=2.0)
            elif gamma > 1:
                grad_x = grad_x.addcmul_(slope, m.pow(gamma - 1), value=gamma)
            else:
                # m ** (gamma - 1) is infinite at m = 0, where p (1 - p) is 0 and the true limit is 0.
                power = torch.where(m > 0, m.clamp_min(torch.finfo(m.dtype).tiny).pow(gamma - 1), 0)
                grad_x = grad_x.addcmul_(slope, power, value=gamma)
        if weight is not None:
            grad_x = grad_x * weight
        return grad_x * grad, None, None, None


class SoftmaxPick(torch.autograd.Function):
    """``log softmax(x, 1)`` at each element's class: logits ``(N, C, ...)`` and class
    indices ``(N, 1, ...)`` to log-probabilities ``(N, ...)``; with ``gamma``, the focal
    terms ``-(1 - p_t) ** gamma * log p_t`` instead, their derivative in closed form.

    Forward: torch's softmax ``p`` and ``log p_t = x_t - max_c x_c + log(max_c p_c)``
    (``log max p`` is ``max x - logsumexp x``, and ``max p >= 1/C`` keeps it exact where
    ``p_t`` itself underflows). Backward: ``dL/dx = g ([c = t] - p)`` with ``g`` the
    gradient of ``log p_t``, one broadcast product and a scatter, instead of autograd's
    dense gather backward followed by torch's log-softmax backward over the strided class
    axis (half the multiclass focal time on CPU), and no chain of per-pixel nodes for the
    focal factor. The gradient is written into the forward's probability buffer, which
    nothing else holds, so a call allocates one logits-sized tensor, not two (a fresh one
    costs page faults on first touch); a second backward through a retained graph
    recomputes it. Half-precision logits are computed in float32.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, index: torch.Tensor, gamma: Optional[float] = None) -> torch.Tensor:
        wide = x if x.dtype in (torch.float32, torch.float64) else x.float()
        prob = torch.softmax(wide, 1)
        picked = wide.gather(1, index).sub_(wide.amax(1, keepdim=True)).add_(prob.amax(1, keepdim=True).log_())
        picked = picked.squeeze(1)
        ctx.save_for_backward(x, index)
        ctx.prob, ctx.slope = prob, None
        if gamma is None:
            return picked
        terms, ctx.slope = focal_terms(picked, gamma)
        return terms

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, index = ctx.saved_tensors
        prob, ctx.prob = ctx.prob, None
        if prob is None:  # the graph was retained and this is a later backward
            prob = torch.softmax(x if x.dtype in (torch.float32, torch.float64) else x.float(), 1)
        g = grad.to(prob.dtype) if ctx.slope is None else grad.to(prob.dtype) * ctx.slope
        g = g.unsqueeze(1)
        grad_x = prob.mul_(g.neg()).scatter_add_(1, index, g)
        return grad_x.to(x.dtype), None, None


def focal_terms(log_p: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``-(1 - p) ** gamma * log p`` from ``log p``, and its derivative by ``log p``:
    ``gamma (1 - p) ** (gamma - 1) p log p - (1 - p) ** gamma`` (the first term's limit
    is 0 at ``p = 1`` for ``gamma < 1``, where the power alone is infinite)."""
    if gamma == 0:
        return -log_p, torch.full_like(log_p, -1.0)
    p = log_p.exp()
    rest = 1 - p
    if not float(gamma).is_integer():
        rest = rest.clamp_min_(0)  # p can round a hair above 1
    if gamma == 1:
        factor, lower = rest, None
    elif gamma == 2:
        factor, lower = rest * rest, rest
    else:
        factor = rest.pow(gamma)
        lower = (rest.pow(gamma - 1) if gamma > 1 else
                 torch.where(rest > 0, rest.clamp_min(torch.finfo(rest.dtype).tiny).pow(gamma - 1), 0))
    slope = p.mul_(log_p) if lower is None else lower.mul(p).mul_(log_p)  # p log p (times the power)
    if gamma != 1:
        slope = slope.mul_(gamma)
    return factor.mul(log_p).neg_(), slope.sub_(factor)


def focal_factor(p_t: torch.Tensor, gamma: float, reduced_threshold: Optional[float]) -> torch.Tensor:
    """``(1 - p_t) ** gamma``, or the reduced factor ``((1 - p_t) / r) ** gamma`` that is 1
    where ``p_t < r`` (smp's ``reduced_threshold``). p_t can round a hair above 1; only a
    fractional power of that is NaN, so the base is clamped at 0 for those."""
    rest = 1 - p_t
    if not float(gamma).is_integer():
        rest = rest.clamp_min(0)
    if reduced_threshold is None:
        return rest.pow(gamma) if gamma else torch.ones_like(rest)
    return torch.where(p_t < reduced_threshold, torch.ones_like(rest), (rest / reduced_threshold).pow(gamma))


class Focal:
    """The ``focal`` loss, built from validated params (see ``FocalParams``): sigmoid
    focal with the fused backward for the plain options, autograd for the others."""

    def __init__(self, params: Any) -> None:
        self.p = params
        self.name = f"focal ({params.mode})"
        self.plain = not params.normalized and params.reduced_threshold is None
        self._tensors: dict = {}
        self.__name__ = "focal"

    def tensor(self, values: list[float], like: torch.Tensor) -> torch.Tensor:
        key = (id(values), like.device, like.dtype)
        if key not in self._tensors:
            self._tensors[key] = torch.tensor(values, device=like.device, dtype=like.dtype)
        return self._tensors[key]

    def reduce(self, loss: torch.Tensor, factor: Optional[torch.Tensor], valid: Optional[torch.Tensor],
               weight: Optional[torch.Tensor]) -> torch.Tensor:
        """Mask, weights, ``normalized`` and the reduction; ``weight`` (class weights) also
        weighs the mean's denominator."""
        if valid is not None:
            weight = valid if weight is None else weight * valid
        if weight is not None:
            loss = loss * weight
        if self.p.normalized:
            kept = factor if weight is None and valid is None else factor * (valid if valid is not None else 1)
            loss = loss / kept.sum().clamp_min(1e-6)
        if self.p.reduction == "none":
            return loss
        if self.p.reduction == "sum":
            return loss.sum()
        if weight is None:
            return loss.mean()
        return loss.sum() / weight.expand_as(loss).sum().clamp_min(torch.finfo(loss.dtype).tiny)

    def sigmoid(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = self.p
        if p.mode == "binary":
            output, target = same_shape(self.name, output, target)
            target = target.reshape(output.shape)
        elif output.shape != target.shape:
            raise fail(self.name, output, target, "a target of the output's shape (N, C, ...)")
        if not p.include_background:
            output, target = output[:, 1:], target[:, 1:]
        valid = None
        if p.ignore_index is not None:
            keep = target != p.ignore_index
            valid = keep.to(output.dtype)
            target = target.masked_fill(~keep, 0)
        target = target.to(output.dtype)
        factor = None
        if p.from_logits and self.plain:
            loss = SigmoidFocal.apply(output, target, p.alpha, p.gamma)
        else:
            if p.from_logits:
                ce = bce_elementwise(output, target)
                p_t = torch.exp(-ce)
            else:
                ce = F.binary_cross_entropy(output, target, reduction="none")
                p_t = output * target + (1 - output) * (1 - target)
            factor = focal_factor(p_t, p.gamma, p.reduced_threshold)
            loss = ce * factor
            if p.alpha is not None:
                loss = loss * (p.alpha * target + (1 - p.alpha) * (1 - target))
        weight = None
        if p.class_weights is not None:
            channels = output.shape[1] if output.ndim > 1 else 1
            weights = p.class_weights[0 if p.include_background else 1:]
            if len(weights) != channels:
                raise LossInputError(f"loss {self.name!r}: class_weights has {len(p.class_weights)} weights but "
                                     f"the output has {channels + (not p.include_background)} channels")
            weight = self.tensor(p.class_weights, output)[0 if p.include_background else 1:]
            weight = weight.reshape(1, -1, *[1] * (output.ndim - 2))
        return self.reduce(loss, factor, valid, weight)

    def softmax(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = self.p
        alpha = p.alpha
        indices = class_indices(self.name, output, target)
        if isinstance(alpha, list) and len(alpha) != output.shape[1]:
            raise LossInputError(f"loss {self.name!r}: alpha has {len(alpha)} class weights but the output has "
                                 f"{output.shape[1]} classes (shape {tuple(output.shape)})")
        if not indices:
            return self.softmax_dense(output, target)
        if target.dtype != torch.int64:
            target = target.long()
        valid = None
        if p.ignore_index is not None:
            keep = target != p.ignore_index
            valid = keep.to(output.dtype if output.dtype in (torch.float32, torch.float64) else torch.float32)
            target = target.masked_fill(~keep, 0)
        factor = None
        if p.from_logits and self.plain:
            loss = SoftmaxPick.apply(output, target.unsqueeze(1), p.gamma)  # the focal terms, one node
        else:
            if p.from_logits:
                log_p_t = SoftmaxPick.apply(output, target.unsqueeze(1))
            else:
                log_p_t = output.gather(1, target.unsqueeze(1)).squeeze(1).clamp_min(torch.finfo(output.dtype).tiny).log()
            factor = focal_factor(log_p_t.exp(), p.gamma, p.reduced_threshold)
            loss = -log_p_t * factor if p.gamma or p.reduced_threshold is not None else -log_p_t
        if isinstance(alpha, list):
            loss = loss * self.tensor(alpha, loss)[target]
        elif alpha is not None:
            loss = loss * alpha
        if not p.include_background:
            loss = loss * (target != 0).to(loss.dtype)
        return self.reduce(loss, factor, valid, None)

    def softmax_dense(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Multiclass focal against one-hot or soft targets of the output's shape."""
        p, alpha = self.p, self.p.alpha
        log_prob = F.log_softmax(output, 1) if p.from_logits else output.clamp_min(torch.finfo(output.dtype).tiny).log()
        target = target.to(log_prob.dtype)
        factor = focal_factor(log_prob.exp(), p.gamma, p.reduced_threshold)
        per_class = -factor * log_prob * target
        if isinstance(alpha, list):
            per_class = per_class * self.tensor(alpha, log_prob).reshape(1, -1, *[1] * (output.ndim - 2))
        elif alpha is not None:
            per_class = per_class * alpha
        if not p.include_background:
            per_class, factor = per_class[:, 1:], factor[:, 1:] * target[:, 1:]
        else:
            factor = factor * target
        return self.reduce(per_class.sum(1), factor.sum(1), None, None)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.softmax(output, target) if self.p.mode == "multiclass" else self.sigmoid(output, target)


def build_focal(params: Any) -> Focal:
    return Focal(params)
