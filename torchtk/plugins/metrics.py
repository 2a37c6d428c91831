"""Built-in metrics. Each accumulates on the device and synchronises once, in compute()."""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl


class AccuracyParams(Params):
    """Fraction of correct predictions.

    One output column: binary, a logit above ``threshold`` predicts 1. Several columns:
    the arg-max is the predicted class, compared with integer (or one-hot) targets.
    """

    threshold: float = Field(0.0, description="Decision threshold on the logit for binary outputs (0 = probability 0.5).")


class Accuracy:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, output, target) -> None:
        if output.ndim > 1 and output.shape[1] > 1:
            predicted = output.argmax(dim=1)
            if target.ndim == output.ndim:
                target = target.argmax(dim=1)
        else:
            predicted = (output > self.threshold).to(target.dtype)
        self.correct = self.correct + (predicted.reshape(target.shape) == target).sum()
        self.total += target.numel()

    def compute(self) -> float:
        return float(self.correct) / max(self.total, 1)


@hookimpl
def register_components(register):
    register(Component("metric", "accuracy", "Fraction of correct predictions (binary or multiclass).",
                       params=AccuracyParams, aliases=("acc",)))


@hookimpl
def make_metric(name, params):
    return Accuracy(params.threshold)
