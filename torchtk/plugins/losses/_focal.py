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


class SigmoidFocal(torch.autograd.Function):
    """``alpha_t * (1 - p_t) ** gamma * BCE(x, t)`` per element, x logits, t in [0, 1].

    With ``m = 1 - p_t = p + t - 2 p t`` and ``p = sigmoid(x)``:
    ``dL/dx = alpha_t * ((p - t) * m**g + BCE * g * m**(g-1) * (1 - 2t) * p * (1 - p))``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor, alpha: Optional[float], gamma: float) -> torch.Tensor:
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
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
