"""Weight initialisation (kind ``init``): every ``torch.nn.init`` function by name, and
the tutorials' ``initialize_weights`` policy.

``{"name": "kaiming_normal", "params": {"mode": "fan_out", "nonlinearity": "relu",
"layers": ["Conv2d"], "modules": ["features.*"]}}`` calls ``torch.nn.init.kaiming_normal_``
on the ``weight`` of every ``Conv2d`` under a module whose name matches ``features.*``,
in ``model.named_modules()`` order, and sets each such layer's bias as ``bias`` says.
The params of each function (``gain``, ``mode``, ``std``, ...) come from its signature
the first time they are needed, so listing imports no torch.

Selection:

- ``layers``: layer type names; a module matches when its class, or a base class, has
  that name (``Linear`` also matches ``NonDynamicallyQuantizableLinear``). A name that is
  neither a ``torch.nn`` class nor a class in the model is an error with close names.
- ``modules``: ``fnmatch`` patterns on module names (``fc``, ``classifier.*``); a match
  selects the module and everything under it; empty: the whole model. A pattern that
  matches no module is an error naming the closest module names.
- Tensors named in ``loaded`` (loaded from pretrained weights by the model factory) are
  kept unless ``include_loaded`` is true: an init refreshes what the weights did not give.

``bias``: ``zeros`` (default, as every tutorial recipe does: torch's default bias is
scaled to the old weight's fan-in), ``keep``, ``same`` (the weight's init, for the
functions that need no fan-in: normal, uniform, trunc_normal, constant, zeros, ones),
or a number (a constant).

The built init returns the parameter names it initialised and leaves one line in its
``torchtk_report``: how many tensors per layer type, and how many loaded ones it kept.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import model_validator

from torchtk import Component, Params, hookimpl

CONV = ("Conv1d", "Conv2d", "Conv3d")
WEIGHTED = ("Linear", *CONV, "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")

# name -> (torch.nn.init function, one-line summary, default layer types)
TORCH_INITS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "xavier_uniform": ("xavier_uniform_", "Glorot/Xavier uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).",
                       WEIGHTED),
    "xavier_normal": ("xavier_normal_", "Glorot/Xavier normal: N(0, std), std = gain * sqrt(2 / (fan_in + fan_out)).",
                      WEIGHTED),
    "kaiming_uniform": ("kaiming_uniform_", "He/Kaiming uniform: U(-b, b), b = gain * sqrt(3 / fan_mode).", WEIGHTED),
    "kaiming_normal": ("kaiming_normal_", "He/Kaiming normal: N(0, std), std = gain / sqrt(fan_mode).", WEIGHTED),
    "normal": ("normal_", "Normal distribution N(mean, std^2).", WEIGHTED),
    "uniform": ("uniform_", "Uniform distribution U(a, b).", WEIGHTED),
    "trunc_normal": ("trunc_normal_", "Normal N(mean, std^2) truncated to the range a..b (ViT-style init).", WEIGHTED),
    "constant": ("constant_", "Fill with a constant value.", WEIGHTED),
    "zeros": ("zeros_", "Fill with zeros (e.g. a zero-initialised head or residual branch).", WEIGHTED),
    "ones": ("ones_", "Fill with ones.", WEIGHTED),
    "orthogonal": ("orthogonal_", "(Semi-)orthogonal matrix, scaled by gain (Saxe et al. 2013).", WEIGHTED),
    "dirac": ("dirac_", "Dirac delta: convolutions that pass their input through (identity).", CONV),
    "eye": ("eye_", "Identity matrix for Linear weights.", ("Linear",)),
    "sparse": ("sparse_", "Sparse matrix: a fraction of each column zero, the rest N(0, std^2) (Martens 2010).",
               ("Linear",)),
}

# inits that need no fan-in, so they also make sense on a 1-d bias ("bias": "same")
FAN_FREE = frozenset({"normal", "uniform", "trunc_normal", "constant", "zeros", "ones"})
GAINS = frozenset({"xavier_uniform", "xavier_normal", "orthogonal"})

# extra pydantic constraints on torch's arguments, per "init.argument" or argument
BOUNDS: dict[str, dict[str, Any]] = {
    "std": {"gt": 0.0}, "sparsity": {"ge": 0.0, "lt": 1.0}, "groups": {"ge": 1},
    "kaiming_uniform.a": {"ge": 0.0}, "kaiming_normal.a": {"ge": 0.0},
}
COMMON = ("layers", "modules", "bias", "include_loaded")

NORMS = ("_BatchNorm", "GroupNorm")


class InitParams(Params):
    """The base of the derived params models: the bounds ``a`` < ``b`` (uniform, trunc_normal)."""

    @model_validator(mode="after")
    def _bounds_in_order(self):
        a, b = getattr(self, "a", None), getattr(self, "b", None)
        if a is not None and b is not None and not a < b:
            raise ValueError(f"a must be below b (got a={a}, b={b})")
        return self


@lru_cache(maxsize=None)
def params_model(name: str) -> type:
    """The params model of ``name``: its ``torch.nn.init`` function's arguments, then the selection."""
    import inspect
    import typing

    import torch.nn.init as torch_init
    from pydantic import Field, create_model

    from torchtk.plugins._torch_params import clean_description, describe_args

    function = getattr(torch_init, TORCH_INITS[name][0])
    hints, docs = typing.get_type_hints(function), describe_args(inspect.getdoc(function) or "")
    fields: dict[str, Any] = {}
    for arg in list(inspect.signature(function).parameters.values())[1:]:
        if arg.name == "generator":
            continue
        annotation, default = hints[arg.name], arg.default
        default = ... if default is inspect.Parameter.empty else float(default) if annotation is float else default
        bounds = BOUNDS.get(f"{name}.{arg.name}", BOUNDS.get(arg.name, {}))
        description = clean_description(docs.get(arg.name, arg.name)).rstrip(".") + "."
        description = description[:1].upper() + description[1:]
        if name in GAINS and arg.name == "gain":
            annotation = typing.Union[typing.Annotated[float, Field(gt=0)], hints_of_gain()]
            description += " Or a nonlinearity name: its recommended gain (torch.nn.init.calculate_gain)."
        fields[arg.name] = (annotation, Field(default, description=description, **bounds))
    fields.update(selection_fields(TORCH_INITS[name][2], with_same=name in FAN_FREE))
    model = create_model(f"{name.title().replace('_', '')}InitParams", __base__=InitParams, **fields)
    model.__doc__ = (f"{TORCH_INITS[name][1]}\n\nCalls torch.nn.init.{function.__name__} on the weight of every "
                     "selected layer; its documentation has the formula.")
    return model


@lru_cache(maxsize=None)
def hints_of_gain() -> Any:
    """``Literal['linear', ..., 'selu']``: the nonlinearities ``calculate_gain`` knows."""
    import typing

    import torch.nn.init as torch_init

    return typing.get_type_hints(torch_init.calculate_gain)["nonlinearity"]


def selection_fields(layers: tuple[str, ...], with_same: bool = False) -> dict[str, Any]:
    """The fields every init shares: which layers, which modules, the bias, loaded tensors."""
    from typing import Literal, Union

    from pydantic import Field

    choices = Literal["zeros", "keep", "same"] if with_same else Literal["zeros", "keep"]
    same = ", same (this init)" if with_same else ""
    return {
        "layers": (list[str], Field(list(layers), min_length=1, description=(
            "Layer types to initialise: class names such as Conv2d or Linear (a base class name matches "
            "its subclasses)."))),
        "modules": (list[str], Field(default_factory=list, description=(
            "Module name patterns (exact names or globs such as classifier.*); a match selects the module and "
            "everything under it. Empty: the whole model."))),
        "bias": (Union[choices, float], Field("zeros", description=(  # type: ignore[valid-type]
            f"The bias of each initialised layer: zeros, keep (leave it){same}, or a number (a constant)."))),
        "include_loaded": (bool, Field(False, description=(
            "Also initialise tensors the model loaded from pretrained weights (kept by default)."))),
    }


@lru_cache(maxsize=None)
def initialize_weights_params() -> type:
    """The params of ``initialize_weights``."""
    from typing import Literal

    from pydantic import Field, create_model

    fields = {k: v for k, v in selection_fields(()).items() if k in ("modules", "include_loaded")}
    model = create_model(
        "InitializeWeightsParams", __base__=Params, **fields,
        conv_mode=(Literal["fan_in", "fan_out"], Field("fan_out", description="Kaiming fan mode of convolutions.")),
        linear_std=(float, Field(0.01, gt=0.0, description="Standard deviation of the Linear weights.")))
    model.__doc__ = (
        "The tutorials' initialize_weights (torchvision's VGG init): convolutions kaiming_normal "
        "(fan_out, relu) with zero bias; BatchNorm and GroupNorm weight 1, bias 0; Linear normal(0, 0.01) "
        "with zero bias. One pass over model.modules(), so it draws random numbers in the same order as "
        "the hand-written loop.")
    return model


@dataclass(frozen=True)
class Rule:
    """Layers of ``types`` get ``torch.nn.init.<function>(weight, **kwargs)``, and their bias ``bias``."""

    types: tuple[str, ...]
    function: str
    kwargs: dict[str, Any]
    bias: Any = "zeros"


class Init:
    """A built init: ``init(model, loaded) -> names``; the first matching rule wins per layer."""

    def __init__(self, name: str, rules: list[Rule], modules: list[str], include_loaded: bool) -> None:
        self.name, self.rules, self.modules, self.include_loaded = name, rules, list(modules), include_loaded
        self.torchtk_report: list[str] = []

    def __call__(self, model: Any, loaded: frozenset[str] = frozenset()) -> list[str]:
        selected = select_modules(model, self.modules)
        check_layer_types(model, {t for rule in self.rules for t in rule.types if not t.startswith("_")})
        names, per_type, kept, seen, matched = [], Counter(), 0, set(), False
        for module_name, module in selected:
            rule = next((r for r in self.rules if is_a(module, r.types)), None)
            if rule is None:
                continue
            matched = True
            for attribute, function, kwargs in rule_tensors(rule):
                tensor = getattr(module, attribute, None)
                if tensor is None or id(tensor) in seen or not hasattr(tensor, "shape"):
                    continue
                seen.add(id(tensor))
                full = f"{module_name}.{attribute}" if module_name else attribute
                if full in loaded and not self.include_loaded:
                    kept += 1
                    continue
                apply(function, tensor, kwargs, full)
                names.append(full)
                per_type[type(module).__name__] += 1
        if not matched:
            types = ", ".join(sorted({t for rule in self.rules for t in rule.types}))
            where = f"the modules {self.modules}" if self.modules else "the model"
            raise ValueError(f"{self.name}: no layer of type {types} in {where}")
        self.torchtk_report = [report_line(self.name, per_type, kept)]
        return names


def rule_tensors(rule: Rule) -> list[tuple[str, str, dict[str, Any]]]:
    """``[("weight", function, kwargs), ("bias", ...)]``: what a rule does to one layer."""
    done = [("weight", rule.function, rule.kwargs)]
    if rule.bias == "same":
        done.append(("bias", rule.function, rule.kwargs))
    elif rule.bias == "zeros":
        done.append(("bias", "zeros_", {}))
    elif rule.bias != "keep":
        done.append(("bias", "constant_", {"val": float(rule.bias)}))
    return done


def apply(function: str, tensor: Any, kwargs: dict[str, Any], name: str) -> None:
    """``torch.nn.init.<function>(tensor, **kwargs)``; a failure names the tensor and its shape."""
    import torch.nn.init as torch_init

    try:
        getattr(torch_init, function)(tensor, **kwargs)
    except (ValueError, RuntimeError) as exc:
        shape = list(tensor.shape)
        raise ValueError(f"{function.rstrip('_')} cannot initialise {name} (shape {shape}): {exc}") from exc


def report_line(name: str, per_type: Counter, kept: int) -> str:
    """``kaiming_normal: 4 tensors initialised (Conv2d 2, Linear 2); 6 loaded tensors kept``."""
    counts = ", ".join(f"{t} {n}" for t, n in sorted(per_type.items()))
    line = f"{name}: {sum(per_type.values())} tensors initialised" + (f" ({counts})" if counts else "")
    return line + (f"; {kept} loaded tensors kept (include_loaded: false)" if kept else "")


def is_a(module: Any, types: tuple[str, ...]) -> bool:
    """Whether the class of ``module`` or one of its bases is named one of ``types``."""
    return any(cls.__name__ in types for cls in type(module).__mro__)


def select_modules(model: Any, patterns: list[str]) -> list[tuple[str, Any]]:
    """``(name, module)`` of every module matching a pattern or under one; all without patterns."""
    modules = list(model.named_modules())
    if not patterns:
        return modules
    names = [name for name, _ in modules if name]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ValueError(f"modules: {pattern!r} matches no module; {close_names(pattern, names)}")
    roots = [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    return [(name, module) for name, module in modules
            if name and any(name == root or name.startswith(root + ".") for root in roots)]


def close_names(wanted: str, names: list[str]) -> str:
    """``did you mean: fc, fc1`` (or the top-level modules when nothing is close)."""
    close = difflib.get_close_matches(wanted, names, n=5, cutoff=0.5)
    if close:
        return f"did you mean: {', '.join(close)}"
    top = sorted({name.split(".")[0] for name in names})
    return f"top-level modules: {', '.join(top) or '(none)'}"


def check_layer_types(model: Any, types: set[str]) -> None:
    """A layer type that neither torch.nn nor the model knows is a typo: say which names are close."""
    import torch.nn as nn

    present = {cls.__name__ for module in model.modules() for cls in type(module).__mro__}
    for name in sorted(types):
        if name not in present and not isinstance(getattr(nn, name, None), type):
            known = sorted(present | {n for n in dir(nn) if n[:1].isupper()})
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = f"; did you mean: {', '.join(close)}" if close else ""
            raise ValueError(f"layers: unknown layer type {name!r} (neither torch.nn nor the model has it){hint}")


def tutorial_rules(params: Any) -> list[Rule]:
    """``initialize_weights``: conv kaiming_normal (fan_out, relu), norms 1/0, Linear normal(0, std)."""
    return [
        Rule(WEIGHTED[1:], "kaiming_normal_", {"mode": params.conv_mode, "nonlinearity": "relu"}, "zeros"),
        Rule(NORMS, "ones_", {}, "zeros"),
        Rule(("Linear",), "normal_", {"mean": 0.0, "std": params.linear_std}, "zeros"),
    ]


@hookimpl
def register_components(register):
    for name, (_function, summary, _layers) in TORCH_INITS.items():
        register(Component("init", name, summary, params=lambda name=name: params_model(name)))
    register(Component("init", "initialize_weights", "The tutorials' init: kaiming conv, BatchNorm 1/0, "
                       "Linear normal(0, 0.01), zero biases.", params=initialize_weights_params))


@hookimpl
def make_init(name, params):
    if name == "initialize_weights":
        return Init(name, tutorial_rules(params), params.modules, params.include_loaded)
    kwargs = {k: v for k, v in params.model_dump().items() if k not in COMMON}
    if isinstance(kwargs.get("gain"), str):
        import torch.nn.init as torch_init

        kwargs["gain"] = torch_init.calculate_gain(kwargs["gain"])
    rule = Rule(tuple(params.layers), TORCH_INITS[name][0], kwargs, params.bias)
    return Init(name, [rule], params.modules, params.include_loaded)
