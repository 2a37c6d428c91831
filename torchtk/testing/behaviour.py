"""Behaviour checks, one per component kind: build with the defaults, then use it as a run does.

Each ``check_<kind>`` returns a list of problems (empty: it behaves) or raises
:class:`Skip` with the reason it cannot be checked here (a precision the device cannot
run). torch is imported inside the functions only.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from torchtk.core.components import Component
from torchtk.core.errors import TorchtkError, shorten
from torchtk.core.registry import Registry
from torchtk.testing import samples as sample_kinds


class Skip(Exception):
    """This component cannot be checked by behaviour here; the message says why."""


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None


def _reason(exc: BaseException) -> str:
    return shorten(f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__, 300)


def check_component(registry: Registry, component: Component, params: Any = None, sample: Any = None) -> Outcome:
    """Build ``component`` with ``params`` (default: its defaults) and check it by behaviour."""
    where = f"{component.kind} {component.name!r}"
    try:
        validated = registry.validate_params(component, dict(params or {}))
    except ValidationError as exc:
        errors = exc.errors()
        missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and e["loc"]]
        whole = [e["msg"] for e in errors if not e["loc"]]  # a model validator: "give one of a or b"
        if params is None and (missing or whole) and len(missing) + len(whole) == len(errors):
            needs = ", ".join(missing) if missing else "; ".join(whole)
            return Outcome(skipped=f"needs params ({needs}): pass params={{{component.name!r}: {{...}}}}")
        found = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        return Outcome([f"{where}: {'the params given' if params else 'its defaults'} do not validate: "
                        f"{shorten(found, 300)}"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's and torchvision's advice is not the plugin's problem
            problems = CHECKS[component.kind](registry, component, validated, sample)
    except Skip as exc:
        return Outcome(skipped=str(exc))
    except Exception as exc:
        problems = [_reason(exc)]
    return Outcome([f"{where}: {p}" for p in problems])


def _small_model() -> Any:
    """A model with the layers freeze policies and initialisers look for: conv, norm, linear head."""
    from collections import OrderedDict

    import torch.nn as nn

    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(4, 2)))


def _scalar_problem(value: Any, leaves: list[Any], model: Any) -> str | None:
    """Why ``value`` is not a finite scalar with a finite gradient, or ``None``."""
    import torch

    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        return f"returned {type(value).__name__} {tuple(getattr(value, 'shape', ()))}, not a 0-dim tensor"
    if not torch.isfinite(value):
        return f"returned {value.item()} for finite inputs"
    if not value.requires_grad:
        return "returned a tensor without a gradient (detached from the output)"
    value.backward()
    grads = [t.grad for t in [*leaves, *model.parameters()] if t.grad is not None]
    if not grads:
        return "no gradient reached the output or the model"
    if not all(torch.isfinite(g).all() for g in grads):
        return "its gradient is not finite"
    return None


def check_loss(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    model = torch.nn.Linear(2, 1)
    loss = registry.build(component, params, model=model)
    kinds = [lambda g: ([sample[0]] if getattr(sample[0], "requires_grad", False) else [], *sample)] if sample \
        else sample_kinds.loss_samples(component.extras, params)
    failures = []
    for make in kinds:
        leaves, output, target = make(torch.Generator().manual_seed(0))
        model.zero_grad()
        try:
            problem = _scalar_problem(loss(output, target), leaves, model)
        except Exception as exc:
            problem = _reason(exc)
        if problem is None:
            return []
        failures.append(f"{getattr(make, '__name__', 'sample')}: {problem}")
    declared = component.extras.get("prediction") or getattr(params, "mode", None)
    tried = f"the {declared!r} samples" if isinstance(declared, str) and not sample else "any sample batch"
    return [f"gives no finite scalar with a gradient on {tried} (" + "; ".join(failures[:4]) + ")"]


def _run_info() -> Any:
    from torchtk.core.state import RunInfo

    return RunInfo(epochs=2, steps_per_epoch=3, batches_per_epoch=3)


def _round_trip(state: Any) -> Any:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint takes it."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_scheduler(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    def build() -> tuple[Any, Any]:
        weight = torch.nn.Parameter(torch.ones(2))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        return optimizer, registry.build(component, params, optimizer=optimizer, run=_run_info())

    optimizer, scheduler = build()
    needs_metric = getattr(scheduler, "needs_metric", component.extras.get("needs_metric", False))
    problems = []
    for step in range(6):
        optimizer.step()
        scheduler.step(1.0 / (step + 1)) if needs_metric else scheduler.step()
        lrs = [group["lr"] for group in optimizer.param_groups]
        if not all(isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0 for lr in lrs):
            return [f"after {step + 1} step(s) the lr is {lrs}, not a finite number >= 0"]
    try:
        saved = _round_trip(scheduler.state_dict())
    except Exception as exc:
        return [f"its state_dict() does not load with torch.load(weights_only=True): {_reason(exc)}"]
    _, fresh = build()
    fresh.load_state_dict(saved)
    return problems


def _freeze_snapshot(model: Any, rules: Any) -> Any:
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [(r.get("name"), sorted(names.get(id(p), "?") for p in r["params"]),
               sorted((k, repr(v)) for k, v in r.items() if k not in ("params", "name"))) for r in rules or ()]
    return ({n: p.requires_grad for n, p in model.named_parameters()},
            {n: m.training for n, m in model.named_modules()}, groups)


def check_freeze(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    model = _small_model()
    policy = registry.build(component, params)
    first = _freeze_snapshot(model, policy(model))
    second = _freeze_snapshot(model, policy(model))
    if first != second:
        what = [part for part, a, b in zip(("requires_grad", "train/eval modes", "group rules"), first, second)
                if a != b]
        return [f"is not idempotent: applying it twice changed the {', '.join(what)}"]
    return []


def check_callback(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    from torchtk.testing.tiny import run_tiny

    entry = {"name": f"{component.plugin}::{component.name}", "params": params.model_dump(mode="json")}
    with tempfile.TemporaryDirectory(prefix="torchtk-check-") as folder:
        try:
            run = run_tiny(callback=entry, registry=registry, output_dir=folder)
        except Exception as exc:
            return [f"a two-epoch run with it failed: {_reason(exc)}"]
        if not run.last_checkpoint.exists():
            return []  # keep_last: false (the checkpoint callback) removes it
        saved = torch.load(run.last_checkpoint, weights_only=True).get("callbacks", {})
    state = next((v for k, v in saved.items() if k.startswith("callbacks[0]")), None)
    if state is None:
        return []
    fresh = registry.build(component, params)
    if not hasattr(fresh, "load_state_dict"):
        return ["has a state_dict() but no load_state_dict(): its state is saved and never restored"]
    fresh.load_state_dict(copy.deepcopy(state))
    if not _same(fresh.state_dict(), state):
        return ["load_state_dict(saved) then state_dict() differs from the saved state (checkpoint round trip)"]
    return []


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and \
            bool(torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def check_metric(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    kinds = [lambda g: ([], *sample)] if sample else sample_kinds.METRIC_SAMPLES
    failures = []
    for make in kinds:
        _, output, target = make(torch.Generator().manual_seed(0))
        metric = registry.build(component, params, classes=None)
        try:
            metric.reset()
            metric.update(output.detach().float() if isinstance(output, torch.Tensor) else output, target)
            value = metric.compute()
        except Exception as exc:
            failures.append(f"{getattr(make, '__name__', 'sample')}: {_reason(exc)}")
            continue
        if isinstance(value, (int, float, torch.Tensor)) or (isinstance(value, dict) and hasattr(metric, "columns")):
            return []
        failures.append(f"compute() returned {type(value).__name__}")
    return ["does not update and compute on any sample batch (" + "; ".join(failures[:4]) + ")"]


def check_optimizer(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    layer = torch.nn.Linear(3, 2, bias=False)  # one 2-D weight: what every optimizer takes (Muon only that)
    parameters = list(layer.parameters())
    optimizer = registry.build(component, params, parameters=parameters)
    before = [p.detach().clone() for p in parameters]

    def closure() -> Any:
        optimizer.zero_grad()
        value = layer(torch.ones(4, 3)).pow(2).sum()
        value.backward()
        return value

    for _ in range(3):  # some leave the first step to their statistics (ADOPT updates from the second)
        closure()
        optimizer.step(closure) if component.extras.get("needs_closure") else optimizer.step()
        if not all(torch.equal(a, b) for a, b in zip(before, parameters)):
            break
    else:
        return ["three steps changed no parameter"]
    if not all(torch.isfinite(p).all() for p in parameters):
        return ["a step made a parameter non-finite"]
    return []


def check_init(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    model = _small_model()
    init = registry.build(component, params)
    names = init(model, frozenset())
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return [f"returned {type(names).__name__}, not the list of parameter names it initialised"]
    unknown = set(names) - {n for n, _ in model.named_parameters()}
    return [f"names parameters the model does not have: {sorted(unknown)}"] if unknown else []


def check_model(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    try:  # the meta device builds without allocating or initialising weights
        with torch.device("meta"):
            model = registry.build(component, params)
    except Exception:
        model = registry.build(component, params)
    return [] if isinstance(model, torch.nn.Module) else [f"built a {type(model).__name__}, not an nn.Module"]


def check_transform(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    transform = registry.build(component, params)
    try:
        pickle.dumps(transform)
    except Exception as exc:
        return [f"does not pickle (DataLoader workers need it): {_reason(exc)}"]
    images = [sample] if sample is not None else [torch.rand(3, 32, 32), (torch.rand(3, 32, 32) * 255).to(torch.uint8)]
    failures = []
    for image in images:
        try:
            transform(image)
            return []
        except Exception as exc:
            failures.append(f"{image.dtype}: {_reason(exc)}")
    return ["cannot transform a (3, 32, 32) image (" + "; ".join(failures) + ")"]


def check_precision(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    import torch

    from torchtk.core.state import Precision

    try:
        precision = registry.build(component, params, device=torch.device("cpu"))
    except TorchtkError as exc:
        raise Skip(f"refuses the CPU: {exc}") from None
    if not isinstance(precision, Precision):
        return [f"returned {type(precision).__name__}, not a torchtk.Precision"]
    with precision.autocast():
        pass
    return []


def check_dataset(registry: Registry, component: Component, params: BaseModel, sample: Any) -> list[str]:
    from torchtk.core.state import Splits

    data = registry.build(component, params)
    parts = [data.train, data.val] if isinstance(data, Splits) else [data]
    for part in (p for p in parts if p is not None):
        if len(part) == 0:
            return ["built an empty dataset"]
        first = part[0]
        if not (isinstance(first, (tuple, list)) and len(first) == 2):
            return [f"its samples are {type(first).__name__}, not (input, target) pairs"]
    return []


CHECKS: dict[str, Callable[[Registry, Component, BaseModel, Any], list[str]]] = {
    "loss": check_loss, "scheduler": check_scheduler, "freeze": check_freeze, "callback": check_callback,
    "metric": check_metric, "optimizer": check_optimizer, "init": check_init, "model": check_model,
    "transform": check_transform, "precision": check_precision, "dataset": check_dataset,
}
