"""Built-in learning-rate schedulers from ``torch.optim.lr_scheduler``."""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl


class StepParams(Params):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (StepLR)."""

    step_size: int = Field(ge=1, description="Epochs between two decays.")
    gamma: float = Field(0.1, gt=0, description="Multiplicative factor of each decay.")


@hookimpl
def register_components(register):
    register(Component("scheduler", "step", "Decay the learning rate by gamma every step_size epochs.",
                       params=StepParams, extras={"interval": "epoch", "needs_metric": False}))


@hookimpl
def make_scheduler(name, params, optimizer):
    from torch.optim import lr_scheduler

    return lr_scheduler.StepLR(optimizer, step_size=params.step_size, gamma=params.gamma)
