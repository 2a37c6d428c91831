"""Stochastic weight averaging (Izmailov et al., 2018) from ``torch.optim.swa_utils``.

Two components, declared here without importing torch:

* callback ``swa``: averages the weights of the epochs from ``swa_start`` on
  (``AveragedModel``; an exponential average with ``average: ema``), validates with the
  average, recomputes the BatchNorm statistics of the averaged weights over the training
  batches (``update_bn``) and leaves the model holding the average at the end;
* scheduler ``swa_lr``: the schedule of the epochs before ``swa_start`` (``before``, or a
  constant lr), then ``SWALR``: anneals to ``swa_lr`` over ``anneal_epochs`` epochs and
  holds it.

The implementations live in :mod:`torchtk_swa.averaging` and :mod:`torchtk_swa.schedule`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from torchtk import Component, Params, hookimpl
from torchtk.plugins.schedulers import NestedScheduler

# an epoch number (1-based) or a fraction of trainer.epochs; strict params keep 1 (an epoch) and 1.0 apart
Start = Union[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0, lt=1)]]
START = ("first averaged epoch: an epoch number (>= 1), or a fraction f of trainer.epochs (0 < f < 1), which "
         "starts at epoch floor(f * epochs) + 1, so 0.75 of 20 epochs averages epochs 16 to 20")


def start_epoch(start: int | float, epochs: int) -> int:
    """The first averaged epoch (1-based) of a run of ``epochs`` epochs."""
    return start if isinstance(start, int) else int(start * epochs) + 1


class SwaParams(Params):
    """Average the weights of the epochs from swa_start on (torch.optim.swa_utils.AveragedModel):
    an equal average of the weights after each epoch (average: swa), or an exponential
    one (average: ema, get_ema_multi_avg_fn), after each epoch or each optimizer update
    (every). With validate_average, the validation pass of those epochs uses the averaged
    weights (their BatchNorm statistics recomputed over the training batches with update_bn
    first), so the val_* values and best.pt are the average's. At the end the model holds
    the average, its BatchNorm statistics recomputed (update_bn), and checkpoints/swa.pt
    holds it; last.pt keeps the training weights and the average, so --resume continues
    both exactly. Use it with the swa_lr scheduler (same swa_start) for SWA's learning rate."""

    swa_start: Optional[Start] = Field(None, description=START.capitalize() + "; null: the swa_lr scheduler's "
                                                                              "swa_start, else 0.75.")
    average: Literal["swa", "ema"] = Field("swa", description="swa: the equal average of the weights; ema: an "
                                                             "exponential moving average with ema_decay.")
    ema_decay: float = Field(0.999, gt=0, lt=1, description="Weight of the old average at each update "
                                                           "(average: ema only).")
    every: Literal["epoch", "step"] = Field("epoch", description="Average the weights after every epoch (SWA's "
                                                                 "rule) or after every optimizer update.")
    validate_average: bool = Field(True, description="Validate the averaged epochs with the averaged weights "
                                                     "(the val_* values, hence best.pt's weights).")
    update_bn: bool = Field(True, description="Recompute the BatchNorm statistics of the averaged weights over "
                                              "the training batches (update_bn) before validating and at the end.")

    @model_validator(mode="after")
    def _decay_needs_ema(self) -> "SwaParams":
        # compared with the default, not "was it given": spec.json records every param, defaults included
        if self.average != "ema" and self.ema_decay != type(self).model_fields["ema_decay"].default:
            raise ValueError("ema_decay needs average: ema (average: swa is an equal average of the weights)")
        return self


class SwaLrParams(Params):
    """SWA's learning rate: the before scheduler (or a constant lr) for the epochs before
    swa_start, then torch.optim.swa_utils.SWALR: from the lr it finds, annealed (cos or
    linear) to swa_lr over anneal_epochs epochs, then held at swa_lr. The epoch swa_start
    trains at the lr SWALR starts from (swa_lr itself with anneal_epochs: 0), each later
    epoch one annealing step further, as torch's recipe steps SWALR after each SWA epoch.
    Steps per epoch."""

    swa_lr: float = Field(gt=0, description="The lr held during averaging (every param group).")
    anneal_epochs: int = Field(10, ge=0, description="Epochs of annealing from the current lr to swa_lr "
                                                      "(0: switch at once).")
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="Shape of the annealing: cos or linear.")
    swa_start: Start = Field(0.75, description=START.capitalize() + "; the swa callback reads it.")
    before: Optional[NestedScheduler] = Field(None, description="The scheduler of the epochs before swa_start "
                                                                "(null: a constant lr).")

    @field_validator("before")
    @classmethod
    def _no_metric(cls, value: Optional[NestedScheduler]) -> Optional[NestedScheduler]:
        if value is not None and value.component.extras.get("needs_metric"):
            raise ValueError(f"{value.name} needs a metric and cannot be swa_lr's before scheduler")
        return value


@hookimpl
def register_components(register):
    register(Component("callback", "swa", "Stochastic weight averaging (or EMA) of the weights, BatchNorm "
                                          "update, averaged model in the checkpoints.", params=SwaParams))
    register(Component("scheduler", "swa_lr", "SWA's lr: a schedule until swa_start, then SWALR to swa_lr.",
                       params=SwaLrParams, extras={"interval": "epoch", "needs_metric": False}))


@hookimpl
def make_callback(name, params):
    from torchtk_swa.averaging import Swa

    return Swa(params)


@hookimpl
def make_scheduler(name, params, optimizer, run):
    from torchtk_swa.schedule import build_swa_lr

    return build_swa_lr(params, optimizer, run)
