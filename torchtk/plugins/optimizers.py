"""Every ``torch.optim`` optimizer by name: ``SparseAdam`` is ``sparse_adam``.

The catalog below is plain data, so listing needs no torch; each params model is
derived from the torch constructor the first time it is needed (defaults from the
signature, descriptions from the docstring's ``Args:`` block, types and bounds added
here). A test checks that every ``torch.optim.Optimizer`` subclass of the installed
torch is in ``TORCH_OPTIMIZERS`` or in ``EXCLUDED``, and that each one takes the same
steps as torch's own class, bit for bit.

Decisions:

- Pairs and triples (``betas``, ``etas``, ``step_sizes``, Adafactor's ``eps``, Muon's
  ``ns_coefficients``) are JSON lists of fixed length; they reach torch as tuples.
- ``IMPLEMENTATION_ARGS`` (``foreach``, ``fused``, ``capturable``, ``differentiable``)
  are not exposed: they choose torch's kernels, not the algorithm, and torch picks the
  fastest safe one for the device by itself.
- ``sgd`` keeps torchtk's default ``lr`` of 0.01 (torch's is 0.001); every other
  default is torch's.
- ``lbfgs`` re-evaluates the loss inside ``step`` through a closure: its catalog entry
  declares ``extras={"needs_closure": True}``, the generic signal on which the engine's
  stepper passes one (re-evaluating the current batch); the engine never tests the name.
  It takes one param group, one batch per update and no GradScaler (checked before
  training).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from torchtk import Component, hookimpl

# name -> (torch.optim class, one-line summary)
TORCH_OPTIMIZERS: dict[str, tuple[str, str]] = {
    "sgd": ("SGD", "Stochastic gradient descent with momentum."),
    "adam": ("Adam", "Adam optimizer."),
    "adamw": ("AdamW", "AdamW: Adam with decoupled weight decay."),
    "adamax": ("Adamax", "Adamax: Adam with the infinity norm."),
    "adagrad": ("Adagrad", "Adagrad: per-parameter lr from the sum of squared gradients."),
    "adadelta": ("Adadelta", "Adadelta: Adagrad with a running window, almost lr-free."),
    "adafactor": ("Adafactor", "Adafactor: factored second moments, memory-light Adam-like updates."),
    "rmsprop": ("RMSprop", "RMSprop: gradients divided by a running RMS, optionally centered."),
    "rprop": ("Rprop", "Rprop: resilient backpropagation, sign-based full-batch steps."),
    "nadam": ("NAdam", "NAdam: Adam with Nesterov momentum."),
    "radam": ("RAdam", "RAdam: Adam with a rectified adaptive learning rate."),
    "asgd": ("ASGD", "Averaged stochastic gradient descent."),
    "sparse_adam": ("SparseAdam", "Adam for sparse gradients (nn.Embedding with sparse=True)."),
    "lbfgs": ("LBFGS", "L-BFGS quasi-Newton method; re-evaluates the batch's loss inside each step."),
    "muon": ("Muon", "Muon: orthogonalized momentum for 2-D weight matrices."),
}

# torch.optim Optimizer subclass -> why it is not exposed
EXCLUDED: dict[str, str] = {}

# names in TORCH_OPTIMIZERS that are built and tested but not registered yet, with the reason
HELD_BACK: dict[str, str] = {}  # optimizers built and tested but not registered yet, with the reason

# optimizers whose step(closure) re-evaluates the loss; the engine reads the catalog's extras
NEEDS_CLOSURE = frozenset({"lbfgs"})
CLOSURE = {"needs_closure": True}

# constructor arguments never exposed (they choose kernels, not the algorithm)
IMPLEMENTATION_ARGS = frozenset({"params", "foreach", "fused", "capturable", "differentiable"})

# torchtk defaults that differ from torch's (kept from torchtk 0.1)
DEFAULTS: dict[str, dict[str, Any]] = {"sgd": {"lr": 0.01}}

INT_ARGS = frozenset({"max_iter", "max_eval", "history_size", "ns_steps"})

# bounds per argument name, for every optimizer that takes it
BOUNDS: dict[str, dict[str, Any]] = {
    "lr": {"gt": 0.0},
    "eps": {"gt": 0.0},
    "weight_decay": {"ge": 0.0},
    "momentum": {"ge": 0.0},
    "dampening": {"ge": 0.0, "le": 1.0},
    "rho": {"ge": 0.0, "le": 1.0},
    "lr_decay": {"ge": 0.0},
    "initial_accumulator_value": {"ge": 0.0},
    "momentum_decay": {"ge": 0.0},
    "lambd": {"ge": 0.0},
    "t0": {"ge": 0.0},
    "beta2_decay": {"le": 0.0},
    "d": {"ge": 1.0},
    "max_iter": {"ge": 1},
    "max_eval": {"ge": 1},
    "tolerance_grad": {"ge": 0.0},
    "tolerance_change": {"ge": 0.0},
    "history_size": {"ge": 1},
    "ns_steps": {"ge": 1},
}

# bounds for one optimizer's argument, where the name means different things
BOUNDS_FOR: dict[tuple[str, str], dict[str, Any]] = {
    ("sgd", "momentum"): {"ge": 0.0, "lt": 1.0},
    ("rmsprop", "alpha"): {"ge": 0.0},
}

# string arguments with a fixed set of values (None is always allowed: torch's default)
CHOICES: dict[str, tuple[str, ...]] = {
    "line_search_fn": ("strong_wolfe",),
    "adjust_lr_fn": ("original", "match_rms_adamw", "spectral_unclamped"),
}

# fixed-length sequences: argument -> (length, element bounds, element may be null)
SEQUENCES: dict[str, tuple[int, dict[str, Any], bool]] = {
    "betas": (2, {"ge": 0.0, "lt": 1.0}, False),
    "etas": (2, {"gt": 0.0}, False),
    "step_sizes": (2, {"gt": 0.0}, False),
    "ns_coefficients": (3, {}, False),
}
SEQUENCES_FOR: dict[tuple[str, str], tuple[int, dict[str, Any], bool]] = {
    ("adafactor", "eps"): (2, {"ge": 0.0}, True),
}
NULL_MEANS = {"max_eval": "; null means max_iter * 1.25", "line_search_fn": "; null means a fixed step of lr",
              "adjust_lr_fn": "; null means original"}

SEQUENCE_NOTES = {
    "betas": " Two numbers, each in [0, 1).",
    "etas": " Two numbers: etaminus in (0, 1), etaplus > 1.",
    "step_sizes": " Two numbers: min <= max, both > 0.",
    "ns_coefficients": " Three numbers (a, b, c) of the Newton-Schulz iteration.",
    "eps": " Two numbers; the first may be null (then it depends on the dtype).",
}


@lru_cache(maxsize=None)
def torch_class(name: str) -> type:
    import torch.optim

    return getattr(torch.optim, TORCH_OPTIMIZERS[name][0])


def _sequence(name: str, arg: str) -> tuple[int, dict[str, Any], bool] | None:
    return SEQUENCES_FOR.get((name, arg)) or (SEQUENCES.get(arg) if (name, arg) not in SEQUENCES_FOR else None)


def _annotation(name: str, arg: str, default: Any) -> tuple[Any, dict[str, Any]]:
    """The pydantic type of one constructor argument, and its Field constraints."""
    from typing import Annotated, Literal, Optional

    from pydantic import Field

    sequence = _sequence(name, arg)
    if sequence is not None:
        length, bounds, nullable = sequence
        item: Any = Annotated[float, Field(**bounds)] if bounds else float
        if nullable:
            item = Optional[item]
        return list[item], {"min_length": length, "max_length": length}  # type: ignore[valid-type]
    bounds = dict(BOUNDS_FOR.get((name, arg), BOUNDS.get(arg, {})))
    if arg in CHOICES:
        return Optional[Literal[CHOICES[arg]]], {}  # type: ignore[valid-type]
    if isinstance(default, bool):
        return bool, {}
    if arg in INT_ARGS:
        return (Optional[int] if default is None else int), bounds
    if isinstance(default, (int, float)):
        return float, bounds
    raise TypeError(f"torch.optim.{torch_class(name).__name__}: no torchtk type for argument {arg!r} "
                    f"(default {default!r}); add it to optimizers.py")


def _description(text: str, arg: str, sequence: bool) -> str:
    import re

    from torchtk.plugins._torch_params import clean_description

    text = clean_description(re.sub(r":(math|attr|class|func|meth):", "", text))
    text = re.sub(r"\s*\(default: [^()]*(\([^()]*\)[^()]*)*\)", "", text).strip().rstrip(".")
    text = re.sub(r"\\[()]", "", text)
    if arg == "lr" and "tensor" in text.lower():  # JSON has no tensors: the note on tensor lrs goes
        text = text.split(". ")[0]
    text += NULL_MEANS.get(arg, "")
    text = (text[:1].upper() + text[1:] + ".") if text else arg.replace("_", " ").capitalize() + "."
    return text + (SEQUENCE_NOTES.get(arg, "") if sequence else "")


@lru_cache(maxsize=None)
def params_model(name: str):
    """The strict params model of optimizer ``name``, derived from torch's constructor."""
    import inspect

    from pydantic import Field, create_model

    from torchtk import Params
    from torchtk.plugins._torch_params import describe_args, summary_of

    cls = torch_class(name)
    docs = describe_args(inspect.getdoc(cls) or "")
    fields: dict[str, Any] = {}
    for arg in inspect.signature(cls.__init__).parameters.values():
        if arg.name == "self" or arg.name in IMPLEMENTATION_ARGS or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        default = DEFAULTS.get(name, {}).get(arg.name, arg.default)
        if default is inspect.Parameter.empty:
            raise TypeError(f"torch.optim.{cls.__name__}: argument {arg.name!r} has no default")
        annotation, constraints = _annotation(name, arg.name, default)
        sequence = _sequence(name, arg.name) is not None
        if sequence:
            value = [float(v) if isinstance(v, (int, float)) else v for v in default]
            field = Field(default_factory=lambda value=value: list(value), **constraints,
                          description=_description(docs.get(arg.name, ""), arg.name, True))
        else:
            if annotation is float:
                default = float(default)
            field = Field(default, **constraints, description=_description(docs.get(arg.name, ""), arg.name, False))
        fields[arg.name] = (annotation, field)
    model = create_model(f"{cls.__name__}Params", __base__=_checks().get(name, Params), **fields)
    model.__doc__ = (f"{summary_of(cls)}\n\nWraps torch.optim.{cls.__name__}; its documentation has the "
                     f"algorithm.{NOTES.get(name, '')}")
    return model


NOTES = {
    "lbfgs": "\n\nL-BFGS evaluates the loss up to max_eval times per step through a closure: "
             "tk train passes one that re-evaluates the current batch (forward, loss and backward "
             "under the run's precision), so use large batches or the whole data set as one batch. "
             "It takes one parameter group, trainer.accumulate_grad_batches 1 and a precision "
             "without a GradScaler (not fp16). Callbacks' on_step sees the gradients of the first "
             "evaluation of each step.",
    "sparse_adam": "\n\nEvery parameter must get sparse gradients (nn.Embedding(..., sparse=True)).",
    "muon": "\n\nEvery parameter must be a 2-D matrix; give biases, norms and embeddings to another "
            "optimizer (torchtk runs one optimizer, so freeze them or use muon only for 2-D models).",
}


@lru_cache(maxsize=None)
def _checks() -> dict[str, type]:
    """Params bases with the cross-field checks torch would make late."""
    from pydantic import model_validator

    from torchtk import Params

    class SGDChecks(Params):
        @model_validator(mode="after")
        def _nesterov_needs_momentum(self):
            if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
                raise ValueError("nesterov needs momentum > 0 and dampening 0")
            return self

    class RpropChecks(Params):
        @model_validator(mode="after")
        def _etas_and_step_sizes(self):
            if not 0 < self.etas[0] < 1 < self.etas[1]:
                raise ValueError("etas must be [etaminus, etaplus] with 0 < etaminus < 1 < etaplus")
            if self.step_sizes[0] > self.step_sizes[1]:
                raise ValueError("step_sizes must be [min, max] with min <= max")
            return self

    return {"sgd": SGDChecks, "rprop": RpropChecks}


@hookimpl
def register_components(register):
    for name, (_cls, summary) in TORCH_OPTIMIZERS.items():
        if name in HELD_BACK:
            continue
        register(Component("optimizer", name, summary, params=lambda name=name: params_model(name),
                           extras=CLOSURE if name in NEEDS_CLOSURE else {}))


def torch_kwargs(name: str, params: Any) -> dict[str, Any]:
    """The params as constructor kwargs: JSON lists become the tuples torch expects."""
    kwargs = params.model_dump()
    for arg, value in kwargs.items():
        if isinstance(value, list):
            kwargs[arg] = tuple(value)
    return kwargs


def _engine_groups(parameters: Any) -> bool:
    """Whether ``parameters`` has the engine's shape: a list of named group dicts."""
    return isinstance(parameters, list) and bool(parameters) and all(
        isinstance(group, dict) and "name" in group for group in parameters)


@hookimpl
def make_optimizer(name, params, parameters):
    if name == "lbfgs" and _engine_groups(parameters) and len(parameters) > 1:
        raise ValueError(f"lbfgs takes one param group, and the freeze policies made {len(parameters)} "
                         f"({', '.join(group['name'] for group in parameters)}); drop their group options "
                         "(lr_scale, weight_decay) or choose another optimizer")
    return torch_class(name)(parameters, **torch_kwargs(name, params))
