"""Sample batches for the behaviour checks, picked by what a component declares.

A loss's catalog entry declares how its model output is read
(``extras={"prediction": "sigmoid" | "softmax" | "log_softmax" | "probabilities" |
"value"}``, :mod:`torchtk.core.prediction`), or its params say it with ``mode`` and
``from_logits`` (the segmentation losses); the batches of that kind are tried, and a
loss that declares neither gets every batch kind below. Each sample is a function of a
seeded generator returning ``(leaves, output, target)``: ``leaves`` are the tensors
that must receive a gradient (the output's own leaves).
"""

from __future__ import annotations

from typing import Any, Callable

Sample = Callable[[Any], tuple[list[Any], Any, Any]]


def _logits(g: Any, *shape: int) -> Any:
    import torch

    return torch.randn(*shape, generator=g).requires_grad_()


def _binary_targets(g: Any, *shape: int) -> Any:
    import torch

    target = torch.zeros(shape)
    target.view(-1)[::2] = 1.0  # both classes present
    return target


def binary(g: Any) -> tuple[list[Any], Any, Any]:
    x = _logits(g, 4, 1)
    return [x], x, _binary_targets(g, 4, 1)


def binary_flat(g: Any) -> tuple[list[Any], Any, Any]:
    x = _logits(g, 4)
    return [x], x, _binary_targets(g, 4)


def probabilities(g: Any) -> tuple[list[Any], Any, Any]:
    x = _logits(g, 4, 1)
    return [x], x.sigmoid(), _binary_targets(g, 4, 1)


def plus_minus(g: Any) -> tuple[list[Any], Any, Any]:
    x = _logits(g, 4, 1)
    return [x], x, _binary_targets(g, 4, 1) * 2 - 1


def multiclass(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    x = _logits(g, 4, 3)
    return [x], x, torch.tensor([0, 1, 2, 1])


def log_multiclass(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    x = _logits(g, 4, 3)
    return [x], x.log_softmax(1), torch.tensor([0, 1, 2, 1])


def log_vs_probabilities(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    x = _logits(g, 4, 3)
    return [x], x.log_softmax(1), torch.randn(4, 3, generator=g).softmax(1)


def multilabel(g: Any) -> tuple[list[Any], Any, Any]:
    x = _logits(g, 4, 3)
    return [x], x, _binary_targets(g, 4, 3)


def multilabel_indices(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    x = _logits(g, 4, 3)
    return [x], x, torch.tensor([[0, -1, -1], [1, 2, -1], [2, -1, -1], [0, 1, 2]])


def values(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    x = _logits(g, 4, 1)
    return [x], x, torch.randn(4, 1, generator=g)


def boxes(g: Any) -> tuple[list[Any], Any, Any]:
    """``(x1, y1, x2, y2)`` boxes of positive size, output and target overlapping."""
    import torch

    corner = torch.rand(4, 2, generator=g).requires_grad_()
    size = torch.rand(4, 2, generator=g) + 0.5
    target_corner = corner.detach() + 0.1
    return [corner], torch.cat([corner, corner + size], 1), torch.cat([target_corner, target_corner + size], 1)


def pairs(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    a, b = _logits(g, 4, 5), _logits(g, 4, 5)
    return [a, b], (a, b), torch.tensor([1.0, -1.0, 1.0, -1.0])


def ranked_pairs(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    a, b = _logits(g, 4), _logits(g, 4)
    return [a, b], (a, b), torch.tensor([1.0, -1.0, 1.0, -1.0])


def triplets(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    a, p, n = _logits(g, 4, 5), _logits(g, 4, 5), _logits(g, 4, 5)
    return [a, p, n], (a, p, n), torch.zeros(4)


def mean_and_variance(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    mean, raw = _logits(g, 4, 1), _logits(g, 4, 1)
    return [mean, raw], (mean, torch.nn.functional.softplus(raw) + 0.1), torch.randn(4, 1, generator=g)


def sequences(g: Any) -> tuple[list[Any], Any, Any]:
    """CTC: ``(log_probs (T, N, C), input_lengths)`` and ``(targets, target_lengths)``."""
    import torch

    x = _logits(g, 6, 2, 4)
    output = (x.log_softmax(2), torch.tensor([6, 6]))
    return [x], output, (torch.tensor([[1, 2, 3], [3, 2, 1]]), torch.tensor([3, 3]))


def masks(g: Any) -> tuple[list[Any], Any, Any]:
    x = _logits(g, 2, 1, 8, 8)
    return [x], x, _binary_targets(g, 2, 1, 8, 8)


def class_masks(g: Any) -> tuple[list[Any], Any, Any]:
    import torch

    x = _logits(g, 2, 3, 8, 8)
    return [x], x, torch.arange(128).reshape(2, 8, 8) % 3


BY_PREDICTION: dict[str, list[Sample]] = {
    "sigmoid": [binary, binary_flat, masks, multilabel, plus_minus, multilabel_indices],
    "probabilities": [probabilities],
    "softmax": [multiclass, class_masks],
    "log_softmax": [log_multiclass, log_vs_probabilities],
    "value": [values, boxes, masks],
}
EVERY: list[Sample] = list(dict.fromkeys(
    [s for group in BY_PREDICTION.values() for s in group]
    + [pairs, ranked_pairs, triplets, mean_and_variance, sequences, class_masks]))


# losses whose params have ``mode`` (and ``from_logits``) say their task there instead
BY_MODE: dict[str, list[Sample]] = {
    "binary": [binary, masks, binary_flat],
    "multiclass": [multiclass, class_masks],
    "multilabel": [multilabel, masks],
}


def _as_probabilities(make: Sample, mode: str) -> Sample:
    """``make``'s batch with the output turned into probabilities (``from_logits: false``)."""

    def probabilities_of(g: Any) -> tuple[list[Any], Any, Any]:
        leaves, output, target = make(g)
        return leaves, output.softmax(1) if mode == "multiclass" else output.sigmoid(), target

    probabilities_of.__name__ = f"{make.__name__}_probabilities"
    return probabilities_of


def loss_samples(extras: Any, params: Any = None) -> list[Sample]:
    """The sample kinds a loss is tried on: by its declared ``prediction``, else by its
    ``mode`` and ``from_logits`` params, else every kind."""
    declared = extras.get("prediction") if extras else None
    if declared in BY_PREDICTION:
        return BY_PREDICTION[declared]
    mode = getattr(params, "mode", None)
    if mode in BY_MODE:
        kinds = BY_MODE[mode]
        return kinds if getattr(params, "from_logits", True) else [_as_probabilities(k, mode) for k in kinds]
    return EVERY


METRIC_SAMPLES: list[Sample] = [binary, multiclass, values, masks, class_masks]
