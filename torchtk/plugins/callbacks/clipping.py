"""``grad_clip``: clip by total norm or by value, and log the total gradient norm."""

from __future__ import annotations

import torch
from torch.nn.utils import clip_grad_value_, clip_grads_with_norm_, get_total_norm

from torchtk import hookimpl
from torchtk.plugins.callbacks._grads import params_with_grad


class EpochMean:
    """The mean of the finite values added this epoch, kept on the device; ``float()``
    reads it (the engine does, once per epoch, for ``state.epoch_values``)."""

    def __init__(self, first: torch.Tensor) -> None:
        finite = torch.isfinite(first)
        self.total = torch.where(finite, first, 0.0).double()
        self.count = finite.double()

    def add(self, value: torch.Tensor) -> None:
        finite = torch.isfinite(value)
        self.total.add_(torch.where(finite, value, 0.0))
        self.count.add_(finite)

    def __float__(self) -> float:
        total, count = torch.stack([self.total, self.count]).tolist()
        return total / count if count else float("nan")


class GradClip:
    def __init__(self, params) -> None:
        self.max_norm, self.clip_value, self.norm_type = params.max_norm, params.clip_value, params.norm_type
        self.log_norm = params.log_norm

    @hookimpl
    def on_fit_start(self, state):
        self.optimizer = state.optimizer  # its param_groups list also holds groups added mid-run

    @hookimpl
    def on_step(self, state):
        parameters = params_with_grad(self.optimizer)
        if not parameters:
            return
        norm = get_total_norm([p.grad for p in parameters], self.norm_type)  # before clipping
        if self.max_norm is not None:
            clip_grads_with_norm_(parameters, self.max_norm, norm)
        else:
            clip_grad_value_(parameters, self.clip_value)
        state.grad_norm = norm
        if not self.log_norm:
            return
        mean = state.epoch_values.get("grad_norm")
        if isinstance(mean, EpochMean):
            mean.add(norm.detach())
        else:
            state.epoch_values["grad_norm"] = EpochMean(norm.detach())
