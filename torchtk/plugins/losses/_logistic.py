"""Binary cross entropy on logits, fast on CPU (torch code, imported when a loss that
needs it is built: ``soft_bce``, ``dice_bce``, ``focal``).

torch's ``binary_cross_entropy_with_logits`` goes through ``log_sigmoid``, which calls
``log1p``; on CPU torch evaluates ``log1p`` one element at a time (2.3 ms for 262,144
floats on the benchmark machine, against 0.26 ms for the vectorised ``log``), so that one
call is most of the time of every BCE-based loss. Here ``log1p(y)`` for
``y = exp(-|x|)`` is the vectorised ``log(u)`` of ``u = 1 + y`` plus its exact rounding
correction, and mean/sum reductions get a one-node backward ``(sigmoid(x) - t) * g``.
Other devices keep torch's own function (their ``log1p`` is fast).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F


def log1p_exp_neg_abs(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(-|x|))`` to within an ulp or two, without ``log1p``.

    With ``u = fl(1 + y)``, ``c = y - (u - 1)`` is the exact rounding error of the sum
    (``u - 1`` is exact for ``u`` in [1, 2]) and ``log(1 + y) = log(u) + log(1 + c / u)``,
    where ``|c / u| < 2**-24`` makes the second term ``c / u`` to float precision. For tiny
    ``y`` this gives ``0 + y``, as ``log1p`` does."""
    y = x.abs().neg_().exp_()
    u = y + 1
    return torch.log(u).add_(y.sub_(u - 1).div_(u))


WIDE = (torch.float32, torch.float64)


def fast_here(x: torch.Tensor) -> bool:
    """True where torch's ``log1p`` is the slow scalar loop (CPU) and ``x`` is float32 or
    float64 (half-precision logits keep torch's function and its autocast rules)."""
    return x.device.type == "cpu" and x.dtype in WIDE


def bce_terms(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-element ``max(x, 0) - x t + log(1 + exp(-|x|))``: torch's BCE with logits."""
    return x.clamp_min(0).addcmul_(x, t, value=-1).add_(log1p_exp_neg_abs(x))


class BCEWithLogits(torch.autograd.Function):
    """``w * BCE(x, t)`` per element (``reduction`` none), or its mean or sum, ``w``
    optional (for example a 0/1 mask), with the closed-form backward
    ``dL/dx = w (sigmoid(x) - t) g`` and ``dL/dt = -w x g``: one node, one elementwise
    chain each way."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor, weight: Optional[torch.Tensor],
                reduction: str) -> torch.Tensor:
        terms = bce_terms(x, t)
        if weight is not None:
            terms = terms.mul_(weight)
        ctx.save_for_backward(x, t, weight)
        ctx.scale = 1.0 / max(x.numel(), 1) if reduction == "mean" else 1.0
        if reduction == "none":
            return terms
        total = terms.sum()
        return total.mul_(ctx.scale) if reduction == "mean" else total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, t, weight = ctx.saved_tensors
        g = grad * ctx.scale if ctx.scale != 1.0 else grad
        grad_x = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.sigmoid(x).sub_(t).mul_(g)
            if weight is not None:
                grad_x = grad_x.mul_(weight)
        if ctx.needs_input_grad[1]:
            grad_t = x * (-g) if weight is None else (x * weight).mul_(-g)
        return grad_x, grad_t, None, None


def binary_cross_entropy_with_logits(x: torch.Tensor, t: torch.Tensor, weight: Optional[torch.Tensor] = None,
                                     pos_weight: Optional[torch.Tensor] = None,
                                     reduction: str = "mean") -> torch.Tensor:
    """``F.binary_cross_entropy_with_logits`` with the same arguments and values (``t`` of
    ``x``'s shape); the CPU path above where it applies (no ``pos_weight``, ``weight``
    of ``x``'s shape), torch's function everywhere else."""
    if (pos_weight is not None or not fast_here(x) or t.shape != x.shape
            or (weight is not None and weight.shape != x.shape)):
        return F.binary_cross_entropy_with_logits(x, t, weight=weight, pos_weight=pos_weight, reduction=reduction)
    return BCEWithLogits.apply(x, t, weight, reduction)


def bce_elementwise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-element BCE with logits (``t`` of ``x``'s shape), differentiable."""
    return binary_cross_entropy_with_logits(x, t, reduction="none")
