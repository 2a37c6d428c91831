"""Built-in small networks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from torchtk import Component, Params, hookimpl
from torchtk.plugins._weights import WeightsPath


class MLPParams(Params):
    """A multilayer perceptron: Linear layers with an activation between them."""

    in_features: int = Field(ge=1, description="Size of each input vector.")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64, 64],
                                                      description="Width of each hidden layer, in order.")
    out_features: int = Field(ge=1, description="Size of each output vector (1 for binary logits).")
    activation: Literal["relu", "gelu", "tanh", "silu", "leaky_relu"] = Field("relu", description="Activation between layers.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability after each hidden activation.")
    weights: WeightsPath | None = Field(None, min_length=1, description=(
        "A weights file to load (state_dict .pt/.pth or a torchtk checkpoint); a last layer of another size is "
        "newly initialised and reported."))


class SimpleCNNParams(Params):
    """The MNIST CNN of the PyTorch tutorials (pytorch/examples mnist), logits out.

    conv 3x3 (32) - ReLU - conv 3x3 (64) - ReLU - max-pool - dropout - fc (128) -
    ReLU - dropout - fc (num_classes). The pooling is adaptive to 12x12, so 28x28
    inputs give exactly the tutorial's network (9216 features into fc1) and any input
    of at least 16x16 works. Modules: conv1, conv2, pool, dropout1, fc1, dropout2, fc2.
    """

    in_channels: int = Field(1, ge=1, description="Channels of the input images (1 for MNIST, 3 for CIFAR).")
    num_classes: int = Field(10, ge=1, description="Outputs of the last layer (fc2).")
    conv_dropout: float = Field(0.25, ge=0, lt=1, description="Dropout probability after the pooling.")
    fc_dropout: float = Field(0.5, ge=0, lt=1, description="Dropout probability before the last layer.")
    weights: WeightsPath | None = Field(None, min_length=1, description=(
        "A weights file to load (state_dict .pt/.pth or a torchtk checkpoint); an fc2 of another size is newly "
        "initialised and reported."))


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
    return _with_weights(nn.Sequential(*layers), params.weights)


def simple_cnn(params: SimpleCNNParams):
    from collections import OrderedDict

    from torch import nn

    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(params.in_channels, 32, 3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(32, 64, 3)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveMaxPool2d(12)), ("dropout1", nn.Dropout(params.conv_dropout)), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(64 * 12 * 12, 128)), ("relu3", nn.ReLU()), ("dropout2", nn.Dropout(params.fc_dropout)),
        ("fc2", nn.Linear(128, params.num_classes)),
    ]))
    return _with_weights(model, params.weights)


def _with_weights(model, weights: str | None):
    if weights is not None:
        from torchtk.plugins._weights import load_weights

        load_weights(model, weights)
    return model


_FACTORIES = {"mlp": mlp, "simple_cnn": simple_cnn}


@hookimpl
def register_components(register):
    register(Component("model", "mlp", "Multilayer perceptron with configurable hidden widths.", params=MLPParams))
    register(Component("model", "simple_cnn", "The tutorials' MNIST CNN: two convolutions, pooling, dropout, two "
                                              "linear layers.", params=SimpleCNNParams))


@hookimpl
def make_model(name, params):
    return _FACTORIES[name](params)
