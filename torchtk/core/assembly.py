"""One build path: every part of a run, built from a resolved spec in one documented order.

``tk train``, ``tk plan`` (and the coming ``tk summary``) all call :func:`build_parts`,
so what they build cannot drift apart. The order, and what each step needs::

    seed        torch, python and the shuffling generator, from spec.seed
    data        make_dataset; make_transform per split; the reproducible split (or the
                dataset's own Splits); batches, cut by the dev-run switches (fast_dev_run,
                limit_*_batches, overfit_batches); RunInfo (updates per epoch); class names
    model       make_model (or a factory by import path; model factories load weights and
                replace the head themselves), on the run's device
    init        make_init per entry, in spec order, skipping parameters loaded from weights
    freeze      freeze_policy, in spec order: requires_grad, frozen norm layers in eval,
                group rules; a policy with run hooks (gradual unfreezing) joins the callbacks
    precision   precision_context on the run's device; the model converted to its
                ``param_dtype`` (after init and freezing, which work on the model as built,
                and before the optimizer and the process wrap see its parameters); the
                in-memory batches cast to its ``input_dtype`` once
    groups      the rules of all policies merged once (torchtk.core.param_groups)
    optimizer   make_optimizer over the merged groups; each group's ``lr_scale`` applied
    loss        make_loss per term, on the run's device (loss modules in the ``param_dtype``);
                the run's loss is their weighted sum
    schedulers  make_scheduler per entry, with its interval and metric declaration; a
                policy with run hooks and a ``bind(optimizer, schedulers)`` method gets both
                (gradual unfreezing adds groups to them later, and again on resume)
    callbacks   make_callback per entry, behind the run hooks (RunHooks)
    metrics     make_metric per entry, with the dataset's class names (and a second
                object for an entry with ``"train": true``)
    checks      every monitored name is logged by this run
    probe       one no-grad forward pass, each loss term and metric on a few samples
    speed       the speed options (torchtk.core.speed): channels_last for the model and
                the in-memory batches, TF32, and torch.compile of the module the loop calls
                (``wrapped``; ``model``, which checkpoints save, stays the plain module)

A failure in any step happens before training, so it is an input error (exit code 2)
naming the spec path, such as ``loss[1]``. A built component may carry
``torchtk_report`` lines (weights loaded, tensors a policy matched): they are collected
in ``Parts.notes``, which the run writes to ``train.log`` and ``tk summary`` prints. ``build_parts(..., upto="schedulers")``
stops after a step (``tk plan`` needs nothing after the schedulers); ``only=`` runs a
subset in the same order (``tk evaluate``/``predict``/``export`` rebuild a run's model,
data, loss and metrics, and nothing that trains).
"""

from __future__ import annotations

import copy
import math
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from torchtk.core.data import (Chain, TensorBatches, batch_limits, class_names, limit_batches, split_and_batch,
                               to_device)
from torchtk.core.distributed import Placement
from torchtk.core.errors import TorchtkError, UserInputError, shorten
from torchtk.core.failures import component_label
from torchtk.core.param_groups import apply_lr_scale, check_rules, group_names, merge_groups
from torchtk.core.plugin_checks import check_callback
from torchtk.core.run_hooks import RunHooks
from torchtk.core.spec import ResolvedSpec, RunSpec
from torchtk.core.state import Precision, RunInfo

PROBE_SAMPLES = 4


@contextmanager
def input_errors(prefix: str) -> Iterator[None]:
    """Turn an exception raised while building a run (``SystemExit`` too) into a ``UserInputError``."""
    try:
        yield
    except UserInputError:
        raise
    except Exception as exc:
        detail = str(exc) if isinstance(exc, TorchtkError) else f"{type(exc).__name__}: {exc}"
        raise UserInputError(f"{prefix}: {detail}") from exc
    except SystemExit as exc:  # user code that calls sys.exit() must not end tk as a success
        raise UserInputError(f"{prefix}: it called sys.exit({exc.code!r})") from exc


def unique_keys(names: list[str], separator: str = "_") -> list[str]:
    """``["l1", "l1", "focal"]`` -> ``["l1", "l1_2", "focal"]``, so no logged column hides another."""
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}{separator}{seen[name]}")
    return keys


class LossSum:
    """The run's loss: the weighted sum of the spec's loss terms."""

    def __init__(self, names: list[str], terms: list[Any], weights: list[float]) -> None:
        self.names, self.terms, self.weights = names, terms, weights
        self.single = len(terms) == 1 and weights[0] == 1.0

    def __call__(self, output: Any, target: Any) -> tuple[Any, list[Any]]:
        if self.single:
            value = self.terms[0](output, target)
            return value, [value]
        values = [term(output, target) for term in self.terms]
        total = values[0] * self.weights[0]
        for value, weight in zip(values[1:], self.weights[1:]):
            total = total + value * weight
        return total, values


@dataclass
class Scheduled:
    """A built scheduler and when the engine steps it.

    ``interval`` is ``"step"`` (after every optimizer update that really happened) or
    ``"epoch"`` (after validation); a scheduler that ``needs_metric`` gets the logged
    value ``monitor`` at its step.
    """

    scheduler: Any
    interval: str
    needs_metric: bool
    monitor: str

    def step(self, row: dict[str, float] | None = None) -> None:
        if self.needs_metric:
            self.scheduler.step((row or {})[self.monitor])
        else:
            self.scheduler.step()


@dataclass
class Parts:
    """Everything a run is made of. ``model`` is the user's module (checkpointed);
    ``wrapped`` is what the loop calls (the same object in one process)."""

    spec: RunSpec
    device: Any
    resolved: ResolvedSpec | None = None  # what the parts were built from (resume compares its defaults)
    generator: Any = None
    info: RunInfo | None = None
    train: Any = None
    val: Any = None
    model: Any = None
    wrapped: Any = None
    frozen_eval: list[Any] = field(default_factory=list)
    rules: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    parameters: list[Any] = field(default_factory=list)
    optimizer: Any = None
    needs_closure: bool = False  # the optimizer's catalog entry declares extras {"needs_closure": True}
    loss: LossSum | None = None
    precision: Precision = field(default_factory=Precision)
    precision_name: str = "fp32"  # the precision component's canonical name, shown when the run starts
    schedulers: list[Scheduled] = field(default_factory=list)
    callbacks: dict[str, Any] = field(default_factory=dict)  # stable key "callbacks[i]:name" -> callback
    metrics: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)  # the metrics also logged as train_<name>
    hooks: RunHooks = field(default_factory=lambda: RunHooks([]))
    classes: list[str] | None = None  # the dataset's class names, kept in metrics.json and checkpoints
    notes: list[str] = field(default_factory=list)  # build reports, written to train.log
    channels_last: bool = False  # trainer.channels_last: the loop puts 4-D input batches in NHWC order

    def report(self, where: str, component: Any) -> None:
        """Keep a built component's ``torchtk_report`` lines (weights loaded, tensors matched)."""
        lines = getattr(component, "torchtk_report", None)
        if isinstance(lines, (list, tuple)):
            self.notes += [f"{where}: {line}" for line in lines]

    @property
    def group_names(self) -> list[str]:
        return group_names(self.optimizer, self.model)

    @property
    def per_group_lrs(self) -> bool:
        """Whether the lr is logged per group (``lr/<name>``) from the first epoch on: yes
        unless the run has the one group ``default`` and no policy that adds groups later,
        so ``history.csv`` never changes its columns mid-run."""
        names = self.group_names
        policies_with_hooks = any(key.startswith("freeze[") for key in self.callbacks)
        return names != ["default"] or policies_with_hooks

    def logged_names(self) -> list[str]:
        names = ["train_loss", *metric_columns("train", self.train_metrics)]
        if self.val is not None:
            names += ["val_loss", *metric_columns("val", self.metrics)]
        return names


def metric_columns(prefix: str, metrics: dict[str, Any]) -> list[str]:
    """The columns metrics log: ``<prefix>_<name>``, or ``<prefix>_<name>/<column>`` for
    each of a metric's ``columns`` (none when that list is empty)."""
    names = []
    for name, metric in metrics.items():
        columns = getattr(metric, "columns", None)
        names += [f"{prefix}_{name}"] if columns is None else [f"{prefix}_{name}/{c}" for c in columns]
    return names


def metric_values(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """Each metric's ``compute()`` as logged columns (see :func:`metric_columns`)."""
    row = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if isinstance(value, dict):
            row.update({f"{prefix}_{name}/{column}": float(v) for column, v in value.items()})
        else:
            row[f"{prefix}_{name}"] = float(value)
    return row


def build(resolved: ResolvedSpec, path: str, **context: Any) -> Any:
    """Build the component at spec ``path`` (``"optimizer"``, ``"loss[0]"``) through its provider."""
    entry = resolved.entry(path)
    if entry.deferred:
        raise UserInputError(f"{path}: {entry.ref.label!r} {entry.deferred}")
    if entry.component is None:  # by import path or a Python object: the one place spec-named code is imported
        from torchtk.core.imported import build_imported

        return build_imported(entry, resolved.objects, context)
    with input_errors(f"{path}: building {entry.kind} {entry.ref.name!r} failed"):
        return resolved.registry.build(entry.component, entry.params, **context)


def _on_device(component: Any, device: Any, dtype: Any = None) -> Any:
    """Losses with tensor params (``pos_weight``) and metrics with state tensors
    (torchmetrics) move to the run's device; loss modules also to the precision's
    ``param_dtype`` (``dtype``), so class weights match a float64 or bfloat16 output."""
    if not callable(getattr(component, "to", None)):
        return component
    component = component.to(device)
    if dtype is not None:
        import torch

        if isinstance(component, torch.nn.Module):
            component = component.to(dtype=dtype)
    return component


# -- the steps, in order ---------------------------------------------------------------------


def _seed(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    import torch

    torch.manual_seed(parts.spec.seed)
    random.seed(parts.spec.seed)
    parts.generator = torch.Generator().manual_seed(parts.spec.seed)


def split_transforms(resolved: ResolvedSpec, split: str) -> Chain | None:
    """The spec's ``data.transforms.<split>`` built as one :class:`Chain` (``None`` when
    empty): what training applies to that split, and what ``tk predict`` applies (val)."""
    entries = resolved.slot(f"data.transforms.{split}")
    return Chain([build(resolved, e.path) for e in entries]) if entries else None


def _data(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    spec = parts.spec
    dataset = build(resolved, "data")
    from torchtk.core.state import Splits

    for where, part in ((("data.train", dataset.train), ("data.val", dataset.val)) if isinstance(dataset, Splits)
                        else (("data", dataset),)):
        parts.report(where, part)
    parts.classes = class_names(dataset)
    transforms = (split_transforms(resolved, "train"), split_transforms(resolved, "val"))
    with input_errors("data: splitting and batching the dataset failed"):
        train, val = split_and_batch(dataset, spec, parts.device, parts.generator, transforms)
    (train_where, train_limit), (val_where, val_limit) = batch_limits(spec.trainer)  # the dev-run switches
    parts.train = limit_batches(placement.shard(train), train_limit, train_where)
    parts.val = limit_batches(placement.shard_eval(val), val_limit, val_where)
    trainer = spec.trainer
    accumulate, batches = trainer.accumulate_grad_batches, len(parts.train)
    parts.info = RunInfo(epochs=1 if trainer.fast_dev_run else trainer.epochs,
                         steps_per_epoch=math.ceil(batches / accumulate), batches_per_epoch=batches,
                         accumulate=accumulate, val_every_n_epochs=trainer.val_every_n_epochs)


def _model(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    from torchtk.core.imported import check_module

    ref = resolved.entry("model").ref
    what = repr(ref.label) if ref.name is None else f"model {ref.name!r}"
    parts.model = check_module(build(resolved, "model"), what).to(parts.device)
    parts.report("model", parts.model)


def _init(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    loaded = frozenset(getattr(parts.model, "torchtk_loaded_parameters", ()) or ())
    for entry in resolved.slot("init"):
        initialiser = build(resolved, entry.path)
        with input_errors(f"{entry.path}: applying {entry.ref.label!r} failed"):
            initialised = initialiser(parts.model, loaded)
        parts.report(entry.path, initialiser)
        if not getattr(initialiser, "torchtk_report", None):
            parts.notes.append(f"{entry.path}: {entry.ref.label} initialised {len(initialised or ())} tensors")


def _freeze(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    for entry in resolved.slot("freeze"):
        policy = build(resolved, entry.path)
        with input_errors(f"{entry.path}: applying {entry.ref.label!r} failed"):
            result = policy(parts.model)
        parts.rules += [(entry.path, rule) for rule in check_rules(result, entry.path)]
        parts.report(entry.path, policy)
        if has_run_hooks(policy):  # gradual unfreezing acts at epoch starts: a callback too
            parts.callbacks[f"{entry.path}:{entry.ref.key}"] = policy
    parts.frozen_eval = [m for m in parts.model.modules() if not m.training]


def _groups(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    parts.parameters = merge_groups(parts.model, parts.rules)
    parts.wrapped = placement.wrap(parts.model)  # after freezing: DDP registers hooks for trainable params


def _optimizer(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    parts.optimizer = build(resolved, "optimizer", parameters=parts.parameters)
    parts.needs_closure = needs_closure(resolved)
    apply_lr_scale(parts.optimizer)  # group rules' lr multipliers, before any scheduler reads the lr


def _loss(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    entries = resolved.slot("loss")
    dtype = parts.precision.param_dtype
    terms = [_on_device(build(resolved, e.path, model=parts.model), parts.device, dtype) for e in entries]
    parts.loss = LossSum(unique_keys([e.ref.key for e in entries]), terms,
                         [e.ref.weight for e in entries])


def _precision(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    precision = parts.precision = build(resolved, "precision", device=parts.device)
    entry = resolved.entry("precision")
    parts.precision_name = entry.component.name if entry.component is not None else entry.ref.key
    if precision.param_dtype is not None:
        with input_errors(f"precision: converting the model to {precision.param_dtype} failed"):
            parts.model.to(dtype=precision.param_dtype)
    if precision.input_dtype is not None:  # in-memory data once; loaded batches are cast by the loop
        for batches in (parts.train, parts.val):
            if isinstance(batches, TensorBatches):
                batches.tensors = to_device(batches.tensors, parts.device, precision.input_dtype)


def _schedulers(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    parts.schedulers = build_schedulers(resolved, parts.optimizer, parts.info)
    for policy in parts.callbacks.values():  # policies that add param groups later (unfreeze_at): the objects
        if callable(getattr(policy, "bind", None)):  # they change, before a resume restores any state
            policy.bind(parts.optimizer, [s.scheduler for s in parts.schedulers])


def has_run_hooks(component: Any) -> bool:
    """Whether ``component`` has ``@torchtk.hookimpl`` methods named after run hooks."""
    return any(hasattr(getattr(component, name, None), "torchtk_impl") for name in RunHooks.NAMES)


def _callbacks(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    """The spec's callbacks, after the policies that have run hooks, all behind RunHooks."""
    parts.callbacks.update({f"{e.path}:{e.ref.key}": build(resolved, e.path) for e in resolved.slot("callbacks")})
    for key, callback in parts.callbacks.items():  # a misnamed hook would never run: refused here
        check_callback(callback, component_label(parts, key.split(":", 1)[0]))
    parts.hooks = RunHooks(list(parts.callbacks.values()))


def _metrics(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    entries = resolved.slot("metrics")
    keys = unique_keys([e.ref.key for e in entries])

    def make(entry: Any) -> Any:
        return _on_device(build(resolved, entry.path, classes=parts.classes), parts.device)

    parts.metrics = {key: make(e) for key, e in zip(keys, entries)}
    parts.train_metrics = {key: make(e) for key, e in zip(keys, entries) if e.ref.train}


def _checks(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    """Every name a part monitors is logged by this run, checked before anything trains."""
    available = parts.logged_names()
    wanted = [("trainer.monitor", parts.spec.trainer.monitor)]
    wanted += [(f"scheduler[{i}].monitor", s.monitor) for i, s in enumerate(parts.schedulers) if s.needs_metric]
    wanted += [(f"{key.split(':')[0]}.params.monitor", cb.monitor) for key, cb in parts.callbacks.items()
               if isinstance(getattr(cb, "monitor", None), str)]
    check_logged(wanted, available)
    placement.check(parts)  # what several processes cannot run (L-BFGS under DDP)
    if parts.needs_closure:
        check_closure(resolved, parts.precision.scaler is not None)


def needs_closure(resolved: ResolvedSpec) -> bool:
    """Whether the spec's optimizer re-evaluates the loss inside ``step`` (L-BFGS): its
    catalog entry declares ``extras={"needs_closure": True}``."""
    component = resolved.entry("optimizer").component
    return component is not None and bool(component.extras.get("needs_closure"))


def check_closure(resolved: ResolvedSpec, scaled: bool) -> None:
    """What an optimizer that re-evaluates the loss of the current batch cannot work with:
    an accumulation window (the closure sees one batch) and a GradScaler (the closure's
    losses would be unscaled, and the scaler's step cannot pass a closure)."""
    spec = resolved.spec
    name = resolved.entry("optimizer").ref.label
    accumulate = spec.trainer.accumulate_grad_batches
    if accumulate > 1:
        raise UserInputError(f"trainer.accumulate_grad_batches: optimizer {name!r} re-evaluates the loss of the "
                             f"current batch inside its step (a closure), so each update must be one batch; set "
                             f"it to 1 (it is {accumulate})")
    if scaled:
        raise UserInputError(f"precision: {resolved.entry('precision').ref.label!r} scales the loss with a GradScaler, "
                             f"which cannot step optimizer {name!r} (it re-evaluates the loss inside its step); use "
                             f"a precision without a GradScaler (fp32, bf16)")


def check_logged(wanted: list[tuple[str, str]], available: list[str]) -> None:
    """Each ``(spec path, name)`` a part monitors must be among the run's logged names."""
    for where, name in wanted:
        if name not in available:
            raise UserInputError(f"{where}: {shorten(repr(name))} is not logged by this run; logged: "
                                 f"{', '.join(available)}")


def metric_per_update(index: int, ref: Any) -> UserInputError:
    """A scheduler that needs a metric was asked to step per update."""
    return UserInputError(f"scheduler[{index}]: {ref.label!r} needs the metric {shorten(repr(ref.monitor))}, which "
                          "exists only at the end of an epoch, so it cannot step per update (\"interval\": \"step\")")


def _probe(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    """One forward pass, each loss term and each metric on a few samples (eval mode,
    no grad, RNG untouched), so an output that does not fit a loss fails now, as an
    input error naming the spec path, and not in the first epoch."""
    import torch

    with input_errors("data: a batch of a few samples cannot be made"):
        batch = probe_batch(parts.val, parts.train)
    if batch is None:
        return
    dtype = parts.precision.input_dtype
    inputs, target = to_device(batch[0], parts.device, dtype), to_device(batch[1], parts.device, dtype)
    model = parts.model
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), parts.precision.autocast():
            with input_errors("model: the forward pass fails on a batch of the data"):
                output = model(inputs)
            for index, (name, term) in enumerate(zip(parts.loss.names, parts.loss.terms)):
                with input_errors(f"loss[{index}]: {name!r} does not fit the model's output and the targets"):
                    term(output, target)
            for index, (name, metric) in enumerate(parts.metrics.items()):
                probe_metric(f"metrics[{index}] ({name})", metric, output, target)
    finally:
        model.train()


def probe_metric(where: str, metric: Any, output: Any, target: Any) -> None:
    """Update and compute a copy of ``metric`` on the probe batch. A metric's own
    ``TorchtkError`` (which names the param to change) is shown as it is."""
    import warnings

    try:
        with warnings.catch_warnings():  # a few samples: "no positive samples" and the like
            warnings.simplefilter("ignore")
            probe = copy.deepcopy(metric)
            probe.update(output.float() if hasattr(output, "float") else output, target)
            probe.compute()
    except TorchtkError as exc:
        raise UserInputError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise UserInputError(f"{where}: does not fit the model's output and the targets: "
                             f"{type(exc).__name__}: {exc}") from exc


def probe_batch(*candidates: Any) -> Any:
    """A few samples of the first non-empty batch iterable, drawing from no shuffling generator."""
    for batches in candidates:
        if isinstance(batches, TensorBatches):
            return [t[: min(PROBE_SAMPLES, batches.batch_size)] for t in batches.tensors]
        if batches is not None:
            dataset = batches.dataset
            return batches.collate_fn([dataset[i] for i in range(min(PROBE_SAMPLES, len(dataset)))])
    return None


def _speed(parts: Parts, resolved: ResolvedSpec, placement: Placement) -> None:
    from torchtk.core import speed

    trainer = resolved.spec.trainer
    speed.set_tf32(trainer.tf32)
    if trainer.channels_last:
        import torch

        parts.model.to(memory_format=torch.channels_last)  # in place: the optimizer keeps the same tensors
        parts.channels_last = True
        for batches in (parts.train, parts.val):
            if isinstance(batches, TensorBatches):
                batches.tensors = speed.channels_last(batches.tensors)
    mode = speed.compile_mode(trainer.compile)
    if mode is not None:
        parts.wrapped = speed.compiled(parts.wrapped, mode, parts.device)
        parts.notes.append(f"trainer.compile: the model is compiled with torch.compile (mode {mode}) at its "
                           "first batch")


Step = Callable[[Parts, ResolvedSpec, Placement], None]
STEPS: dict[str, Step] = {
    "seed": _seed, "data": _data, "model": _model, "init": _init, "freeze": _freeze, "precision": _precision,
    "groups": _groups, "optimizer": _optimizer, "loss": _loss, "schedulers": _schedulers,
    "callbacks": _callbacks, "metrics": _metrics, "checks": _checks, "probe": _probe, "speed": _speed,
}


def build_parts(resolved: ResolvedSpec, placement: Placement, upto: str = "speed",
                only: tuple[str, ...] | None = None) -> Parts:
    """Build the run's parts in the order of :data:`STEPS`, stopping after ``upto``;
    with ``only``, just those steps, still in that order (inference needs no optimizer:
    ``torchtk.core.saved_run.INFERENCE_STEPS``)."""
    unknown = [name for name in (upto, *(only or ())) if name not in STEPS]
    if unknown:
        raise ValueError(f"steps {unknown}; steps: {', '.join(STEPS)}")
    parts = Parts(spec=resolved.spec, device=placement.device, resolved=resolved)
    for name, step in STEPS.items():
        if only is None or name in only:
            step(parts, resolved, placement)
        if name == upto:
            break
    return parts


def build_schedulers(resolved: ResolvedSpec, optimizer: Any, info: RunInfo) -> list[Scheduled]:
    """The spec's schedulers for ``optimizer``, in the spec's order; all of them step (chained).

    The interval is the ref's ``interval``, else the component's catalog declaration.
    Whether a metric is needed is the catalog's declaration, unless the built scheduler
    has a ``needs_metric`` bool attribute (a warmup followed by ``reduce_on_plateau``).
    """
    scheduled = []
    for index, entry in enumerate(resolved.slot("scheduler")):
        ref = entry.ref
        scheduler = build(resolved, entry.path, optimizer=optimizer, run=info)
        extras = entry.component.extras if entry.component is not None else {}
        interval = ref.interval or extras.get("interval", "epoch")
        needs_metric = getattr(scheduler, "needs_metric", None)
        if not isinstance(needs_metric, bool):
            if entry.component is None:  # imported or given: its step's signature tells
                from torchtk.core.imported import needs_metric as step_needs_metric

                needs_metric = step_needs_metric(scheduler)
            else:
                needs_metric = bool(extras.get("needs_metric"))
        if needs_metric and interval == "step":
            raise metric_per_update(index, ref)
        scheduled.append(Scheduled(scheduler, interval, needs_metric, ref.monitor))
    return scheduled


# -- the checks that need no data (tk validate) --------------------------------------------------


def _metric_needed(entry: Any) -> bool:
    """Whether a scheduler entry steps on a logged value: its catalog says so, or a scheduler
    it hands over to does (``warmup`` with ``then: reduce_on_plateau``), as the built one would."""
    if entry.component is not None and entry.component.extras.get("needs_metric"):
        return True
    params = entry.params
    for name in type(params).model_fields if params is not None else ():
        nested = getattr(getattr(params, name, None), "component", None)
        if nested is not None and getattr(nested, "extras", {}).get("needs_metric"):
            return True
    return False


def monitored_names(resolved: ResolvedSpec) -> list[tuple[str, str]]:
    """``(spec path, logged name)`` for every name the spec monitors, read from the spec
    alone: the trainer's monitor, the monitor of each scheduler that needs a metric, and
    the ``monitor`` param of callbacks (and freeze policies)."""
    wanted = [("trainer.monitor", resolved.spec.trainer.monitor)]
    for index, entry in enumerate(resolved.slot("scheduler")):
        if _metric_needed(entry):
            wanted.append((f"scheduler[{index}].monitor", entry.ref.monitor))
    for field_name in ("freeze", "callbacks"):
        for entry in resolved.slot(field_name):
            monitor = entry.ref.params.get("monitor")
            if isinstance(monitor, str):
                wanted.append((f"{entry.path}.params.monitor", monitor))
    return wanted


def spec_logged_names(resolved: ResolvedSpec, validation: bool,
                      per_column: frozenset[str] = frozenset()) -> list[str]:
    """What :meth:`Parts.logged_names` gives for this spec, with or without a validation
    split; a metric key in ``per_column`` logs ``val_<key>/<column>`` columns instead."""
    entries = resolved.slot("metrics")
    metrics = unique_keys([e.ref.key for e in entries])
    names = ["train_loss", *(f"train_{m}" for m, e in zip(metrics, entries) if e.ref.train and m not in per_column)]
    if validation:
        names += ["val_loss", *(f"val_{m}" for m in metrics if m not in per_column)]
    return names


def per_column_metrics(resolved: ResolvedSpec, wanted: list[tuple[str, str]]) -> frozenset[str]:
    """The metric keys whose built metric logs per-column values (a ``columns`` list),
    built without data (no class names) only when a monitored name starts with one."""
    entries = resolved.slot("metrics")
    keys = unique_keys([e.ref.key for e in entries])
    mentioned = [(key, entry) for key, entry in zip(keys, entries) if not entry.deferred
                 and any(name.startswith((f"val_{key}", f"train_{key}")) for _, name in wanted)]
    return frozenset(key for key, entry in mentioned
                     if getattr(build(resolved, entry.path), "columns", None) is not None)


def _own_validation_split(resolved: ResolvedSpec) -> bool:
    """With ``data.val_split: 0``, whether the dataset brings a non-empty validation split
    of its own (:class:`~torchtk.core.state.Splits`): only building it tells."""
    import torch

    from torchtk.core.state import Splits

    with torch.random.fork_rng(devices=[]):
        dataset = build(resolved, "data")
    return isinstance(dataset, Splits) and dataset.val is not None and len(dataset.val) > 0


def check_without_data(resolved: ResolvedSpec, build_dataset: bool = True) -> None:
    """The checks of :func:`build_parts` that need no batches, no model and no training,
    with the same messages: every monitored name is logged by this run (``checks``), no
    scheduler that needs a metric steps per update (``schedulers``), and an optimizer that
    needs a closure gets one batch per update (``checks``). ``tk validate``
    runs them, so a spec it calls valid is not rejected by ``tk train`` for these reasons.

    Whether the run validates is read from ``data.val_split`` where it can be: above 0,
    the run is taken to have ``val_loss`` and ``val_<metric>`` (a dataset too small to
    hold out one sample, or one whose own splits have no validation part, is only found
    by ``tk train``). At 0, the run validates only if the dataset brings its own splits,
    which only building it tells; it is built then (``build_dataset``), and only when a
    monitored name needs validation: generated data and local files, nothing trained.
    """
    if needs_closure(resolved):
        check_closure(resolved, scaled=False)  # whether a GradScaler comes is known once precision is built
    for index, entry in enumerate(resolved.slot("scheduler")):
        ref = entry.ref
        interval = ref.interval or (entry.component.extras.get("interval", "epoch") if entry.component else "epoch")
        if interval == "step" and _metric_needed(entry):
            raise metric_per_update(index, ref)
    wanted = monitored_names(resolved)
    per_column = per_column_metrics(resolved, wanted)
    # a per-class column's name needs the dataset's class names: tk train checks those
    wanted = [(where, name) for where, name in wanted
              if not name.startswith(tuple(f"{p}_{key}/" for key in per_column for p in ("train", "val")))]
    validation = resolved.spec.data.val_split > 0 or bool(resolved.spec.trainer.overfit_batches)
    if not validation and any(name not in spec_logged_names(resolved, False, per_column) for _, name in wanted):
        if not build_dataset:
            return
        validation = _own_validation_split(resolved)
    available = spec_logged_names(resolved, validation, per_column)
    check_logged(wanted, available)
