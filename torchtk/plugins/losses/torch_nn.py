"""Every ``torch.nn`` loss by name: ``CrossEntropyLoss`` is ``cross_entropy``.

The catalog below is plain data, so listing needs no torch; each params model is
derived from the torch constructor the first time it is needed (types and defaults
from the signature, descriptions from the docstring, bounds added here).

Most torch losses take ``(input, target)`` and are called as ``loss(output, target)``.
Those whose ``forward`` takes more tensors read them from a model output (and for
``ctc`` a target) that is a tuple, as documented per loss:

=============================  ===============================================
``cosine_embedding``           output ``(x1, x2)``, target ``y`` in {1, -1}
``margin_ranking``             output ``(x1, x2)``, target ``y`` in {1, -1}
``triplet_margin``             output ``(anchor, positive, negative)``; target unused
``triplet_margin_with_distance``  as ``triplet_margin``; ``distance`` names the function
``gaussian_nll``               output ``(mean, var)``, target the observed values
``ctc``                        output ``(log_probs, input_lengths)``,
                               target ``(targets, target_lengths)``
=============================  ===============================================

``EXCLUDED`` lists the ``torch.nn`` classes named ``*Loss`` that are deliberately not
exposed, with the reason; a test checks that every ``*Loss`` class of the installed
torch is in one table or the other.
"""

from __future__ import annotations

from functools import lru_cache

from torchtk import Component, hookimpl

# name -> (torch.nn class, one-line summary, calling convention)
TORCH_LOSSES: dict[str, tuple[str, str, str]] = {
    "bce_with_logits": ("BCEWithLogitsLoss", "Binary cross entropy on logits (sigmoid + BCE, numerically stable); "
                                             "label smoothing, ignore_index: soft_bce.", "pair"),
    "bce": ("BCELoss", "Binary cross entropy on probabilities (on logits with label smoothing, ignore_index: "
                       "soft_bce).", "pair"),
    "cross_entropy": ("CrossEntropyLoss", "Softmax cross entropy on class logits, with label smoothing and ignore_index.", "pair"),
    "nll": ("NLLLoss", "Negative log-likelihood on log-probabilities.", "pair"),
    "mse": ("MSELoss", "Mean squared error (L2).", "pair"),
    "l1": ("L1Loss", "Mean absolute error.", "pair"),
    "smooth_l1": ("SmoothL1Loss", "L1 loss that is quadratic below beta (Fast R-CNN box regression).", "pair"),
    "huber": ("HuberLoss", "Huber loss: quadratic below delta, linear above.", "pair"),
    "kl_div": ("KLDivLoss", "Kullback-Leibler divergence; output holds log-probabilities.", "pair"),
    "poisson_nll": ("PoissonNLLLoss", "Negative log-likelihood of a Poisson target.", "pair"),
    "gaussian_nll": ("GaussianNLLLoss", "Gaussian negative log-likelihood; the output is (mean, var).", "mean_var"),
    "hinge_embedding": ("HingeEmbeddingLoss", "Hinge embedding loss for targets in {1, -1}.", "pair"),
    "soft_margin": ("SoftMarginLoss", "Two-class logistic loss for targets in {1, -1}.", "pair"),
    "multi_margin": ("MultiMarginLoss", "Multi-class hinge (margin) loss on class scores.", "pair"),
    "multi_label_margin": ("MultiLabelMarginLoss", "Multi-label hinge loss; target lists class indices, -1 ends.", "pair"),
    "multi_label_soft_margin": ("MultiLabelSoftMarginLoss", "Multi-label one-versus-all logistic loss.", "pair"),
    "cosine_embedding": ("CosineEmbeddingLoss", "Cosine similarity loss for pairs; the output is (x1, x2).", "two_inputs"),
    "margin_ranking": ("MarginRankingLoss", "Ranking hinge loss for pairs; the output is (x1, x2).", "two_inputs"),
    "triplet_margin": ("TripletMarginLoss", "Triplet loss with p-norm distance; the output is (anchor, positive, negative).", "triplet"),
    "triplet_margin_with_distance": ("TripletMarginWithDistanceLoss",
                                     "Triplet loss with a named distance; the output is (anchor, positive, negative).",
                                     "triplet"),
    "ctc": ("CTCLoss", "Connectionist temporal classification for unaligned sequences.", "ctc"),
}

# torch.nn class -> why it is not exposed as a loss
EXCLUDED: dict[str, str] = {
    "AdaptiveLogSoftmaxWithLoss": (
        "a layer with its own trainable weights, built from the model's sizes (in_features, n_classes, "
        "cutoffs), that replaces the output layer and returns (output, loss): it belongs in the model, "
        "where the optimizer sees its parameters, not in the loss list"),
    "LinearCrossEntropyLoss": (
        "fuses the model's final Linear layer (its own weight, in_features, num_classes) with cross "
        "entropy: those weights belong to the model and the optimizer; use a Linear head and cross_entropy"),
    "NLLLoss2d": "deprecated alias of NLLLoss kept by torch for old code; use nll",
}

# how tk predict reads a model output trained with the loss (torchtk.core.prediction.OUTPUT_KINDS)
PREDICTIONS: dict[str, str] = {
    "bce_with_logits": "sigmoid", "bce": "probabilities", "cross_entropy": "softmax", "nll": "log_softmax",
    "kl_div": "log_softmax", "multi_margin": "softmax", "multi_label_margin": "sigmoid",
    "multi_label_soft_margin": "sigmoid", "soft_margin": "sigmoid",
    "mse": "value", "l1": "value", "smooth_l1": "value", "huber": "value", "poisson_nll": "value",
}

REDUCTIONS = ("mean", "sum", "none")

# extra pydantic constraints, per argument name, for values torch would reject late
BOUNDS: dict[str, dict[str, object]] = {
    "label_smoothing": {"ge": 0.0, "le": 1.0},
    "eps": {"gt": 0.0},
    "delta": {"gt": 0.0},
    "beta": {"ge": 0.0},
    "blank": {"ge": 0},
}

DISTANCES = ("pairwise", "cosine")


@lru_cache(maxsize=None)
def torch_class(name: str) -> type:
    from torch import nn

    return getattr(nn, TORCH_LOSSES[name][0])


@lru_cache(maxsize=None)
def params_model(name: str):
    from typing import Literal

    from pydantic import Field, create_model

    from torchtk.plugins._torch_params import params_from_signature

    cls = torch_class(name)
    reductions = REDUCTIONS + ("batchmean",) if name == "kl_div" else REDUCTIONS
    base = params_from_signature(cls, choices={"reduction": reductions}, skip=frozenset({"distance_function"}))
    overrides: dict = {}
    for field_name, field in base.model_fields.items():
        bounds = dict(BOUNDS.get(field_name, {}))
        description = _plain(field.description or "")
        if name == "multi_margin" and field_name == "p":
            overrides[field_name] = (Literal[1, 2], Field(1, description="The norm degree: 1 or 2."))
        elif name == "triplet_margin" and field_name == "p":
            overrides[field_name] = (float, Field(field.default, gt=0, description=description))
        else:
            overrides[field_name] = (field.annotation, Field(field.default, description=description, **bounds))
    if name == "triplet_margin_with_distance":
        overrides["distance"] = (Literal[DISTANCES], Field(  # type: ignore[valid-type]
            "pairwise", description="pairwise: Euclidean distance (torch's default, nn.PairwiseDistance); "
                                    "cosine: 1 - cosine similarity. Stands in for torch's distance_function callable."))
    model = create_model(base.__name__, __base__=base, **overrides)
    convention = TORCH_LOSSES[name][2]
    model.__doc__ = _plain(base.__doc__ or "") + CONVENTIONS.get(convention, "")
    return model


def _plain(text: str) -> str:
    """Docstring text without Sphinx roles (``:math:`x``` -> ``x``)."""
    import re

    return re.sub(r":(math|attr|class|func|meth):", "", text)


CONVENTIONS = {
    "two_inputs": "\n\nThe model's output is a pair (x1, x2); the target holds 1 or -1 per pair.",
    "triplet": "\n\nThe model's output is a triple (anchor, positive, negative); the target is not used.",
    "mean_var": "\n\nThe model's output is a pair (mean, var); the target holds the observed values.",
    "ctc": "\n\nThe model's output is (log_probs, input_lengths) with log_probs of shape (T, N, C); "
           "the target is (targets, target_lengths).",
}


@hookimpl
def register_components(register):
    for name, (_cls, summary, _convention) in TORCH_LOSSES.items():
        register(Component("loss", name, summary, params=lambda name=name: params_model(name),
                           extras={"prediction": PREDICTIONS[name]} if name in PREDICTIONS else {}))


# losses over class scores in dim 1: one column would make them silently 0
CLASS_LOSSES = frozenset({"cross_entropy", "nll", "multi_margin"})


@hookimpl
def make_loss(name, params):
    from torchtk.plugins._torch_params import tensor_kwargs

    kwargs = tensor_kwargs(params)
    convention = TORCH_LOSSES[name][2]
    if name == "triplet_margin_with_distance":
        kwargs["distance_function"] = _distance(kwargs.pop("distance"))
    from torchtk.plugins.losses._inputs import checked

    if name in CLASS_LOSSES:
        from torchtk.plugins.losses._torch_nn_calls import with_class_check

        return checked(name, with_class_check(torch_class(name), name)(**kwargs))
    module = torch_class(name)(**kwargs)
    if convention == "pair":
        return checked(name, module)
    from torchtk.plugins.losses._torch_nn_calls import TupleCall

    return checked(name, TupleCall(module, name, convention))


def _distance(name: str):
    if name == "pairwise":
        return None
    import torch.nn.functional as F

    def cosine_distance(x, y):
        return 1 - F.cosine_similarity(x, y)

    return cosine_distance
