"""Every ``torch.nn`` loss by name: ``CrossEntropyLoss`` is ``cross_entropy``.

The catalog below is plain data, so listing needs no torch; each params model is
derived from the torch constructor the first time it is needed.
"""

from __future__ import annotations

from functools import lru_cache

from torchtk import Component, hookimpl

# name -> (torch.nn class, one-line summary)
TORCH_LOSSES: dict[str, tuple[str, str]] = {
    "bce_with_logits": ("BCEWithLogitsLoss", "Binary cross entropy on logits (sigmoid + BCE, numerically stable)."),
    "bce": ("BCELoss", "Binary cross entropy on probabilities."),
    "cross_entropy": ("CrossEntropyLoss", "Softmax cross entropy on class logits, with label smoothing and ignore_index."),
    "nll": ("NLLLoss", "Negative log-likelihood on log-probabilities."),
    "mse": ("MSELoss", "Mean squared error (L2)."),
    "l1": ("L1Loss", "Mean absolute error."),
    "smooth_l1": ("SmoothL1Loss", "L1 loss that is quadratic below beta (Fast R-CNN box regression)."),
    "huber": ("HuberLoss", "Huber loss: quadratic below delta, linear above."),
}

REDUCTIONS = ("mean", "sum", "none")


@lru_cache(maxsize=None)
def torch_class(name: str) -> type:
    from torch import nn

    return getattr(nn, TORCH_LOSSES[name][0])


@lru_cache(maxsize=None)
def params_model(name: str):
    from torchtk.plugins._torch_params import params_from_signature

    return params_from_signature(torch_class(name), choices={"reduction": REDUCTIONS})


@hookimpl
def register_components(register):
    for name, (_cls, summary) in TORCH_LOSSES.items():
        register(Component("loss", name, summary, params=lambda name=name: params_model(name)))


@hookimpl
def make_loss(name, params):
    from torchtk.plugins._torch_params import tensor_kwargs

    return torch_class(name)(**tensor_kwargs(params))
