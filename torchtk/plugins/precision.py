"""Numeric precision: fp32; autocast to bf16 or fp16 (fp16 with a GradScaler); pure
low precision (weights, inputs and floating-point targets in bfloat16 or float16, as
Lightning's ``bf16-true`` / ``16-true``); and float64.

Every precision is a :class:`torchtk.Precision`: the engine converts the model to its
``param_dtype``, casts inputs to its ``input_dtype`` and runs forward passes under its
``autocast``; it knows none of the names below.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from torchtk import Component, NoParams, Params, Precision, TorchtkError, hookimpl


class GradScalerParams(Params):
    """Autocast the forward pass to float16, with a torch.amp.GradScaler against
    gradient underflow: the loss is multiplied by the scale before backward, the
    gradients divided by it before the update; an update whose gradients hold inf/NaN
    is skipped and the scale multiplied by backoff_factor, and after
    growth_interval updates in a row without one, by growth_factor. The
    defaults are GradScaler's own."""

    init_scale: float = Field(65536.0, gt=0, description="Scale factor at the start of the run (2**16).")
    growth_factor: float = Field(2.0, gt=1, description="Factor the scale is multiplied by after growth_interval "
                                                        "updates in a row without inf/NaN gradients.")
    backoff_factor: float = Field(0.5, gt=0, lt=1, description="Factor the scale is multiplied by when an update "
                                                               "finds inf/NaN gradients (that update is skipped).")
    growth_interval: int = Field(2000, ge=1, description="Updates in a row without inf/NaN gradients before the "
                                                         "scale grows.")


# name -> (torch dtype, pure: weights and inputs in that dtype rather than an autocast forward pass)
_MODES = {
    "bf16": ("bfloat16", False),
    "fp16": ("float16", False),
    "bf16_true": ("bfloat16", True),
    "fp16_true": ("float16", True),
    "fp64": ("float64", True),
}


@hookimpl
def register_components(register):
    register(Component("precision", "fp32", "Full float32 precision (no autocast).", params=NoParams,
                       aliases=("32", "float32", "32-true")))
    register(Component("precision", "bf16", "Autocast the forward pass to bfloat16 (no scaler needed).",
                       params=NoParams, aliases=("bfloat16", "bf16-mixed")))
    register(Component("precision", "fp16", "Autocast to float16 with a GradScaler against underflow.",
                       params=GradScalerParams, aliases=("16", "float16", "16-mixed")))
    register(Component("precision", "bf16_true", "Pure bfloat16: weights, inputs and float targets in bfloat16.",
                       params=NoParams, aliases=("bf16-true",),
                       doc="Weights, optimizer state, floating-point inputs and floating-point targets in "
                           "bfloat16, no autocast and no scaler (Lightning's bf16-true): half the memory of "
                           "fp32, at bfloat16's 8 significant bits in every update."))
    register(Component("precision", "fp16_true", "Pure float16: weights, inputs and float targets in float16.",
                       params=NoParams, aliases=("16-true",),
                       doc="Weights, optimizer state, floating-point inputs and floating-point targets in "
                           "float16, no autocast and no scaler (Lightning's 16-true). Gradients that underflow "
                           "float16 are lost (no GradScaler), and Adam's default eps (1e-8) is 0 in float16: "
                           "set optimizer.params.eps to 1e-4. Prefer fp16 or bf16_true unless memory decides."))
    register(Component("precision", "fp64", "Double precision: weights, inputs and float targets in float64.",
                       params=NoParams, aliases=("64", "64-true", "float64", "double"),
                       doc="Weights, optimizer state, floating-point inputs and floating-point targets in "
                           "float64 (Lightning's 64-true): for numerical checks; not available on MPS."))


def check_supported(name: str, dtype: Any, device: Any) -> None:
    """Fail before training when ``device`` cannot multiply and differentiate in ``dtype``
    (float64 on MPS, a torch without half-precision kernels for the CPU)."""
    import torch

    try:
        weight = torch.ones(2, 2, dtype=dtype, device=device, requires_grad=True)
        (weight @ torch.ones(2, 2, dtype=dtype, device=device)).sum().backward()
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TorchtkError(f"{name} needs {dtype} arithmetic, which this torch does not support on "
                           f"{device} ({detail}); use fp32 or bf16 there") from exc


@hookimpl
def precision_context(name, params, device):
    import functools

    import torch

    if name == "fp32":
        return Precision()
    dtype_name, pure = _MODES[name]
    dtype = getattr(torch, dtype_name)
    check_supported(name, dtype, device)
    if pure:
        return Precision(param_dtype=dtype, input_dtype=dtype)
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=dtype)
    scaler = torch.amp.GradScaler(device.type, **params.model_dump()) if name == "fp16" else None
    return Precision(autocast=autocast, scaler=scaler)
