"""Weight penalties, used as extra terms of the spec's ``loss`` list.

They ignore ``(output, target)`` and read the model's parameters, which the engine
passes to ``make_loss`` as ``model``.
"""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, TorchtkError, hookimpl


class PenaltyParams(Params):
    """A weight penalty added to the loss: ``alpha * sum(|w|^p)`` over the model's weights."""

    alpha: float = Field(1e-4, ge=0, description="Coefficient of the penalty.")
    include_bias: bool = Field(False, description="Also penalise biases and other 1-d parameters (norm scales).")


class WeightPenalty:
    """``alpha * sum(|w|**power)`` over the trainable weights of a model."""

    def __init__(self, model, alpha: float, power: int, include_bias: bool) -> None:
        self.alpha = alpha
        self.power = power
        self.weights = [p for p in model.parameters() if p.requires_grad and (include_bias or p.ndim > 1)]

    def __call__(self, output=None, target=None):
        import torch

        if not self.weights:
            return torch.zeros(())
        if self.power == 2:
            total = torch.stack([w.pow(2).sum() for w in self.weights]).sum()
        else:
            total = torch.stack([w.abs().sum() for w in self.weights]).sum()
        return self.alpha * total


_POWERS = {"l1_regularization": 1, "l2_regularization": 2}


@hookimpl
def register_components(register):
    register(Component("loss", "l1_regularization", "L1 weight penalty (lasso) added as a loss term.",
                       params=PenaltyParams, aliases=("l1_penalty",)))
    register(Component("loss", "l2_regularization", "L2 weight penalty (ridge) added as a loss term.",
                       params=PenaltyParams, aliases=("l2_penalty",)))


@hookimpl
def make_loss(name, params, model):
    if model is None:
        raise TorchtkError(f"loss {name!r} needs the model: pass model=... to registry.create")
    return WeightPenalty(model, params.alpha, _POWERS[name], params.include_bias)
