"""Gradients of the parameters the optimizer updates (groups added mid-run included)."""

from __future__ import annotations

from typing import Any


def params_with_grad(optimizer: Any) -> list[Any]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
