"""Built-in small networks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from torchtk import Component, Params, hookimpl


class MLPParams(Params):
    """A multilayer perceptron: Linear layers with an activation between them."""

    in_features: int = Field(ge=1, description="Size of each input vector.")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64, 64],
                                                      description="Width of each hidden layer, in order.")
    out_features: int = Field(ge=1, description="Size of each output vector (1 for binary logits).")
    activation: Literal["relu", "gelu", "tanh", "silu", "leaky_relu"] = Field("relu", description="Activation between layers.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability after each hidden activation.")


_ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "silu": "SiLU", "leaky_relu": "LeakyReLU"}


def mlp(params: MLPParams):
    from torch import nn

    layers: list[nn.Module] = []
    width = params.in_features
    for size in params.hidden:
        layers += [nn.Linear(width, size), getattr(nn, _ACTIVATIONS[params.activation])()]
        if params.dropout:
            layers.append(nn.Dropout(params.dropout))
        width = size
    layers.append(nn.Linear(width, params.out_features))
    return nn.Sequential(*layers)


_FACTORIES = {"mlp": mlp}


@hookimpl
def register_components(register):
    register(Component("model", "mlp", "Multilayer perceptron with configurable hidden widths.", params=MLPParams))


@hookimpl
def make_model(name, params):
    return _FACTORIES[name](params)
