"""timm's optimizers that torch lacks (``lamb``, ``lion``, ``adan``, ``lars``, ``madgrad``,
the cautious ``c*`` variants, ...), built with ``timm.optim.create_optimizer_v2``.

Their params come from the catalog: every constructor argument a JSON spec can set, with
the default ``create_optimizer_v2`` gives it for that name (its presets, such as
``caution=True`` for ``clion``, are fixed by the name). Left out (see
``tools/make_catalog.py``): the names torchtk's built-ins already provide from
``torch.optim`` (``adam``, ``sgd``, ``adafactor``, ``muon``, ...), timm's legacy copies of
them, the bitsandbytes and apex (``bnb*``, ``fused*``) variants, which need those
packages, and ``adahessian``, which needs a second-order backward.
"""

from __future__ import annotations

from typing import Any, Optional

from torchtk import Params

from torchtk_timm._catalog import OPTIMIZERS

FLOATS = {"lr", "weight_decay", "momentum", "dampening", "delta", "wd_ratio", "eps"}
IMPLEMENTATION = {"foreach", "capturable", "differentiable", "verbose", "mu_dtype", "precond_dtype"}
OPTIONAL_STR = {"memory_save_mode"}


def summary(name: str) -> str:
    description, cls, _args = OPTIMIZERS[name]
    return f"timm {cls}: {description[:1].lower() + description[1:]}."


def _field(name: str, arg: str, default: Any) -> tuple[Any, Any]:
    from pydantic import Field

    cls = OPTIMIZERS[name][1]
    text = f"{cls}'s {arg} (timm.optim; default {default!r})."
    if isinstance(default, bool):
        return bool, Field(default, description=text)
    if isinstance(default, list):
        return list[float], Field(default_factory=lambda d=default: list(d), min_length=len(default),
                                  max_length=len(default), description=text)
    if isinstance(default, str):
        return str, Field(default, min_length=1, description=text)
    if default is None:
        kind = str if arg in OPTIONAL_STR else (list[float] if arg.startswith("betas") else float)
        return Optional[kind], Field(None, description=text + " Null: the optimizer's own choice.")
    if arg in FLOATS or isinstance(default, float):
        bounds = {"gt": 0} if arg == "lr" else {"ge": 0} if arg in FLOATS else {}
        return float, Field(float(default), description=text, **bounds)
    return int, Field(default, description=text)


def params_model(name: str) -> type[Params]:
    """The params model of one timm optimizer, from its constructor arguments in the catalog."""
    from pydantic import Field, create_model

    description, cls, args = OPTIMIZERS[name]
    fields: dict[str, Any] = {}
    if "lr" not in args:  # a required lr (timm's SGDP): no default to offer
        fields["lr"] = (float, Field(gt=0, description=f"{cls}'s learning rate (timm.optim; required)."))
    for arg, default in args.items():
        if arg not in IMPLEMENTATION:
            fields[arg] = _field(name, arg, default)
    model = create_model(f"Timm{cls}Params_{name}", __base__=Params, **fields)
    model.__doc__ = (f"timm.optim's {name!r} ({cls}): {description}. Built with timm.optim.create_optimizer_v2 "
                     f"over torchtk's param groups (their own lr and weight_decay win).")
    return model


def build(name: str, params: Params, parameters: Any):
    from timm.optim import create_optimizer_v2

    kwargs = params.model_dump()
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    return create_optimizer_v2(parameters, opt=name, **kwargs)
