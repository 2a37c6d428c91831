"""Fine-tuning policies: choose which parameters train.

A policy is applied by calling it on the model; it may return optimizer parameter
groups. Frozen parameters are left out of the optimizer entirely.
"""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl


class FreezeParams(Params):
    """Freeze every parameter whose name starts with one of ``modules``.

    Names are those of ``model.named_parameters()``, e.g. ``"0."`` for the first layer
    of a Sequential, or ``"backbone."``. An empty list freezes nothing.
    """

    modules: list[str] = Field(default_factory=list, description="Parameter-name prefixes to freeze.")


class Freeze:
    def __init__(self, prefixes: list[str]) -> None:
        self.prefixes = tuple(prefixes)

    def __call__(self, model):
        matched = [name for name, p in model.named_parameters() if name.startswith(self.prefixes)]
        if self.prefixes and not matched:
            names = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise ValueError(f"freeze: no parameter name starts with {list(self.prefixes)}; top-level modules: {names}")
        for name, parameter in model.named_parameters():
            if name in matched:
                parameter.requires_grad_(False)
        return None


@hookimpl
def register_components(register):
    register(Component("freeze", "freeze", "Freeze parameters by name prefix (e.g. a backbone).", params=FreezeParams))


@hookimpl
def freeze_policy(name, params):
    return Freeze(params.modules)
