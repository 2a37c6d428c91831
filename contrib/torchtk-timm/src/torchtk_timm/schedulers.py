"""timm schedules that torch and torchtk's built-ins lack, as function-style schedulers:

- ``cosine_cycles``: timm's ``CosineLRScheduler``: cosine cycles whose peak decays by
  ``cycle_decay`` per restart and whose length grows by ``cycle_mul``, up to
  ``cycle_limit`` cycles, with a linear warmup and timm's k-decay. torch's
  ``CosineAnnealingWarmRestarts`` restarts at the same peak every time and has no warmup.
- ``tanh``: timm's ``TanhLRScheduler`` (hyperbolic-tangent decay, Hsueh et al. 2019), with
  the same cycles and warmup; torch has no tanh schedule.
- ``wsd``: timm's ``WSDLRScheduler``: warmup, a stable phase, then a decay (1-sqrt, cosine,
  linear, ...) over the last ``decay_t`` steps, the schedule used for LLM pre-training;
  torch has none.

The schedule's values come from the timm scheduler's own ``_get_lr(t)``, computed on a
one-parameter optimizer with lr 1, so they are factors of each group's base lr; torch's
``LambdaLR`` applies them (epochs, or optimizer updates with ``"interval": "step"``), which
keeps the checkpoint loadable with ``weights_only=True`` and the lr of every param group
scaled alike. Noise (``noise_range_t``) is left out: it is random per call.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from torchtk import Params

STEPS = "Scheduler steps: epochs, or optimizer updates when the spec sets \"interval\": \"step\"."


class _Warmup(Params):
    warmup_t: int = Field(0, ge=0, description="Linear warmup length in scheduler steps (0: none).")
    warmup_factor: float = Field(0.0, ge=0, le=1, description=(
        "The lr factor the warmup starts from (timm's warmup_lr_init, as a fraction of the base lr)."))
    min_factor: float = Field(0.0, ge=0, le=1, description="The lowest lr factor (timm's lr_min / base lr).")


class _Cycles(_Warmup):
    t_initial: int = Field(ge=1, description="Length of the first cycle in scheduler steps. " + STEPS)
    cycle_mul: float = Field(1.0, ge=1, description="Each cycle is this many times longer than the previous one.")
    cycle_decay: float = Field(1.0, gt=0, le=1, description="Each restart's peak is this times the previous peak.")
    cycle_limit: int = Field(1, ge=1, description="Number of cycles; after the last one the lr stays at min_factor.")
    warmup_prefix: bool = Field(False, description="The warmup comes before the first cycle instead of inside it.")


class CosineCyclesParams(_Cycles):
    """timm's CosineLRScheduler as lr factors: warmup, then cosine cycles with decaying peaks."""

    k_decay: float = Field(1.0, gt=0, description="timm's k-decay exponent (1: the plain cosine).")


class TanhParams(_Cycles):
    """timm's TanhLRScheduler as lr factors: warmup, then tanh-shaped decay cycles."""

    lb: float = Field(-7.0, description="Lower bound of the tanh argument (timm's lb).")
    ub: float = Field(3.0, description="Upper bound of the tanh argument (timm's ub).")

    @model_validator(mode="after")
    def _bounds(self) -> "TanhParams":
        if not self.lb < self.ub:
            raise ValueError(f"lb ({self.lb}) must be below ub ({self.ub})")
        return self


class WsdParams(_Warmup):
    """timm's WSDLRScheduler as lr factors: warmup, stable, then decay over the last decay_t steps."""

    t_initial: int = Field(ge=1, description="Length of the whole schedule after warmup in scheduler steps. " + STEPS)
    decay_t: int = Field(ge=1, description="Length of the final decay phase in scheduler steps (<= t_initial).")
    decay_fn: Literal["1-sqrt", "cosine", "linear"] = Field(
        "1-sqrt", description="Shape of the decay (timm's decay_fn).")

    @model_validator(mode="after")
    def _fits(self) -> "WsdParams":
        if self.decay_t > self.t_initial:
            raise ValueError(f"decay_t ({self.decay_t}) must not exceed t_initial ({self.t_initial})")
        return self


def _timm_kwargs(params: Params) -> dict:
    kwargs = params.model_dump()
    kwargs["warmup_lr_init"] = kwargs.pop("warmup_factor")
    kwargs["lr_min"] = kwargs.pop("min_factor")
    return kwargs


def factors(name: str, params: Params):
    """``t -> lr factor`` of timm's scheduler ``name``, from its ``_get_lr`` on lr 1."""
    import torch
    from timm import scheduler

    cls = {"cosine_cycles": scheduler.CosineLRScheduler, "tanh": scheduler.TanhLRScheduler,
           "wsd": scheduler.WSDLRScheduler}[name]
    unit = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    timm_scheduler = cls(unit, **_timm_kwargs(params))
    return lambda t: float(timm_scheduler._get_lr(t)[0])


def build(name: str, params: Params, optimizer):
    from torch.optim.lr_scheduler import LambdaLR

    factor = factors(name, params)
    return LambdaLR(optimizer, lambda step: factor(step))


SCHEDULERS = {
    "cosine_cycles": ("timm CosineLRScheduler: warmup, then cosine cycles whose peak decays at each restart.",
                      CosineCyclesParams, factors),
    "tanh": ("timm TanhLRScheduler: warmup, then tanh-shaped decay (optionally in cycles).", TanhParams, factors),
    "wsd": ("timm WSDLRScheduler: warmup, stable lr, then a 1-sqrt/cosine/linear decay at the end.", WsdParams,
            factors),
}
