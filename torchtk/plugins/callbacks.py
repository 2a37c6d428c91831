"""Per-step and per-epoch tricks: gradient clipping and early stopping."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from torchtk import Component, Params, hookimpl


class GradClipParams(Params):
    """Clip the global gradient norm before every optimizer step (after unscaling)."""

    max_norm: float = Field(gt=0, description="Largest allowed total gradient norm.")
    norm_type: float = Field(2.0, gt=0, description="Order of the norm (2 = Euclidean; use a large value for max-norm).")


class GradClip:
    def __init__(self, params: GradClipParams) -> None:
        self.max_norm = params.max_norm
        self.norm_type = params.norm_type

    @hookimpl
    def on_fit_start(self, state):
        from torch.nn.utils import clip_grad_norm_

        self.clip = clip_grad_norm_
        self.parameters = [p for p in state.model.parameters() if p.requires_grad]

    @hookimpl
    def on_step(self, state):
        self.clip(self.parameters, self.max_norm, norm_type=self.norm_type)


class EarlyStoppingParams(Params):
    """Stop training when a monitored value has not improved for ``patience`` epochs."""

    monitor: str = Field("val_loss", description="Logged value to watch, e.g. val_loss or val_accuracy.")
    patience: int = Field(3, ge=1, description="Epochs without improvement before stopping.")
    mode: Literal["min", "max"] = Field("min", description="Whether lower (min) or higher (max) is better.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")


class EarlyStopping:
    def __init__(self, params: EarlyStoppingParams) -> None:
        self.params = params
        self.monitor = params.monitor  # the engine checks it is logged before training starts
        self.best = math.inf if params.mode == "min" else -math.inf
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.params.mode == "min":
            return value < self.best - self.params.min_delta
        return value > self.best + self.params.min_delta

    @hookimpl
    def on_epoch_end(self, state):
        if self.params.monitor not in state.metrics:
            raise KeyError(f"early_stopping monitors {self.params.monitor!r}, which is not logged; "
                           f"logged: {', '.join(state.metrics)}")
        value = state.metrics[self.params.monitor]
        if self.improved(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.params.patience:
                state.should_stop = True
                state.log(f"early stopping: {self.params.monitor} has not improved for {self.bad_epochs} epochs")

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


_CALLBACKS = {"grad_clip": GradClip, "early_stopping": EarlyStopping}


@hookimpl
def register_components(register):
    register(Component("callback", "grad_clip", "Clip the gradient norm before each optimizer step.",
                       params=GradClipParams, aliases=("gradient_clipping",)))
    register(Component("callback", "early_stopping", "Stop when a monitored value stops improving.",
                       params=EarlyStoppingParams))


@hookimpl
def make_callback(name, params):
    return _CALLBACKS[name](params)
