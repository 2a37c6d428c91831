"""Built-in optimizers from ``torch.optim``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from torchtk import Component, Params, hookimpl


class SGDParams(Params):
    """Stochastic gradient descent, with optional momentum and Nesterov momentum."""

    lr: float = Field(0.01, gt=0, description="Learning rate.")
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum factor.")
    dampening: float = Field(0.0, ge=0, le=1, description="Dampening for momentum.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient.")
    nesterov: bool = Field(False, description="Use Nesterov momentum (needs momentum > 0, dampening 0).")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGDParams":
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return self


class AdamParams(Params):
    """Adam: adaptive moment estimation (Kingma & Ba)."""

    lr: float = Field(0.001, gt=0, description="Learning rate.")
    betas: list[Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2,
                               description="Decay rates of the first and second moment estimates, each in [0, 1).")
    eps: float = Field(1e-8, gt=0, description="Term added to the denominator for numerical stability.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient (coupled).")
    amsgrad: bool = Field(False, description="Use the AMSGrad variant.")


class AdamWParams(AdamParams):
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter)."""

    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay coefficient.")


_OPTIMIZERS = {"sgd": ("SGD", SGDParams), "adam": ("Adam", AdamParams), "adamw": ("AdamW", AdamWParams)}


@hookimpl
def register_components(register):
    register(Component("optimizer", "sgd", "Stochastic gradient descent with momentum.", params=SGDParams))
    register(Component("optimizer", "adam", "Adam optimizer.", params=AdamParams))
    register(Component("optimizer", "adamw", "AdamW: Adam with decoupled weight decay.", params=AdamWParams))


@hookimpl
def make_optimizer(name, params, parameters):
    import torch

    kwargs = params.model_dump()
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(torch.optim, _OPTIMIZERS[name][0])(parameters, **kwargs)
