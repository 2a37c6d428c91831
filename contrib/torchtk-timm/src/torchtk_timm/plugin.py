"""The torchtk plugin (entry point ``timm`` in the ``torchtk`` group).

The catalog (``_catalog.py``, generated from timm by ``tools/make_catalog.py``) is data,
so ``tk list`` and ``tk show`` import neither torch nor timm; timm is imported when a
component is built. A timm name that equals a built-in name (``resnet50``, ``vgg16``,
``convnext_tiny``) is a clash: the plain name keeps torchtk's torchvision model and
``timm::resnet50`` picks timm's.
"""

from __future__ import annotations

from torchtk import Component, hookimpl

from torchtk_timm import models, optimizers, schedulers
from torchtk_timm._catalog import MODELS, OPTIMIZERS


@hookimpl
def register_components(register):
    for name in MODELS:
        register(Component("model", name, models.summary(name), params=models.TimmModelParams,
                           doc=lambda name=name: models.describe(name)))
    for name in OPTIMIZERS:
        register(Component("optimizer", name, optimizers.summary(name),
                           params=lambda name=name: optimizers.params_model(name)))
    for name, (summary, params, _factory) in schedulers.SCHEDULERS.items():
        register(Component("scheduler", name, summary, params=params,
                           extras={"interval": "epoch", "needs_metric": False}))


@hookimpl
def make_model(name, params):
    return models.build(name, params)


@hookimpl
def make_optimizer(name, params, parameters):
    return optimizers.build(name, params, parameters)


@hookimpl
def make_scheduler(name, params, optimizer):
    return schedulers.build(name, params, optimizer)
