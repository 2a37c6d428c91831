"""Numeric precision of the forward pass: fp32, and autocast to bf16 or fp16."""

from __future__ import annotations

from torchtk import Component, NoParams, Precision, hookimpl


@hookimpl
def register_components(register):
    register(Component("precision", "fp32", "Full float32 precision (no autocast).", params=NoParams,
                       aliases=("32", "float32")))
    register(Component("precision", "bf16", "Autocast the forward pass to bfloat16 (no scaler needed).",
                       params=NoParams, aliases=("bfloat16", "bf16-mixed")))
    register(Component("precision", "fp16", "Autocast to float16 with a GradScaler against underflow.",
                       params=NoParams, aliases=("16", "float16", "16-mixed")))


@hookimpl
def precision_context(name, device):
    import functools

    import torch

    if name == "fp32":
        return Precision()
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=dtype)
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(autocast=autocast, scaler=scaler)
