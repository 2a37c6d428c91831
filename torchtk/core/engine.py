"""The training loop: builds a run from its spec through the hooks, then trains it.

The per-batch path does only what a hand-written loop does, plus two in-place adds to
accumulate the epoch loss on the device. The device is read (``.item()``) only every
``trainer.log_every_n_steps`` batches and at epoch ends; run hooks nobody configured
are never called.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torchtk.core.data import TensorBatches, batch_size, split_and_batch, to_device
from torchtk.core.errors import RunFailed, TorchtkError, UserInputError
from torchtk.core.outputs import RunDir, new_run_dir
from torchtk.core.progress import Reporter
from torchtk.core.registry import Registry, get_registry
from torchtk.core.run_hooks import RunHooks
from torchtk.core.spec import RunSpec, load_spec, spec_differences, spec_fingerprint
from torchtk.core.state import RunInfo, TrainState

CHECKPOINT_VERSION = 1


class RunInterrupted(TorchtkError):
    """Ctrl-C or SIGTERM: the last good checkpoint is kept."""

    exit_code = 130


@dataclass
class RunResult:
    """What ``torchtk.train`` returns."""

    run_dir: Path
    history: list[dict[str, float]]
    best: dict[str, float]
    last: dict[str, float]
    monitor: str
    stopped_early: bool = False
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def best_value(self) -> float:
        return self.best.get(self.monitor, math.nan)


# -- data ----------------------------------------------------------------------------


@contextmanager
def input_errors(prefix: str) -> Iterator[None]:
    """Turn an exception raised while building a run into a ``UserInputError``."""
    try:
        yield
    except UserInputError:
        raise
    except Exception as exc:
        detail = str(exc) if isinstance(exc, TorchtkError) else f"{type(exc).__name__}: {exc}"
        raise UserInputError(f"{prefix}: {detail}") from exc


def found_inf(scaler: Any, optimizer: Any) -> bool:
    """Whether the GradScaler skipped this optimizer's step (read once, after ``scaler.step``,
    which has synchronised on the same values already)."""
    return any(bool(v.item()) for v in scaler._found_inf_per_device(optimizer).values())


def unique_keys(names: list[str]) -> list[str]:
    """``["l1", "l1", "focal"]`` -> ``["l1", "l1_2", "focal"]``, so no logged column hides another."""
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return keys


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"trainer.device={name!r}, but CUDA is not available here; use \"auto\" or \"cpu\"")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserInputError(f"trainer.device={name!r}, but there are {torch.cuda.device_count()} CUDA devices")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise UserInputError(f"trainer.device={name!r}, but MPS is not available here; use \"auto\" or \"cpu\"")
    return device


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


def build_schedulers(spec: RunSpec, registry: Registry, build: Any, optimizer: Any, info: RunInfo) -> list[Scheduled]:
    """The spec's schedulers for ``optimizer``, in the spec's order; all of them step (chained).

    The interval is the ref's ``interval``, else the component's catalog declaration.
    Whether a metric is needed is the catalog's declaration, unless the built scheduler
    has a ``needs_metric`` bool attribute (a warmup followed by ``reduce_on_plateau``).
    """
    scheduled = []
    for index, ref in enumerate(spec.scheduler):
        component = registry.resolve("scheduler", ref.name)
        scheduler = build("scheduler", ref, optimizer=optimizer, run=info)
        interval = ref.interval or component.extras.get("interval", "epoch")
        needs_metric = getattr(scheduler, "needs_metric", None)
        if not isinstance(needs_metric, bool):
            needs_metric = bool(component.extras.get("needs_metric"))
        if needs_metric and interval == "step":
            raise UserInputError(f"scheduler[{index}]: {ref.name!r} needs the metric {ref.monitor!r}, which exists "
                                 "only at the end of an epoch, so it cannot step per update (\"interval\": \"step\")")
        scheduled.append(Scheduled(scheduler, interval, needs_metric, ref.monitor))
    return scheduled


class Run:
    """One training run, built from a validated spec."""

    def __init__(self, spec: RunSpec, registry: Registry, reporter: Reporter, run_dir: Path | None) -> None:
        import torch

        self.spec, self.registry, self.reporter = spec, registry, reporter
        torch.manual_seed(spec.seed)
        random.seed(spec.seed)
        self.device = resolve_device(spec.trainer.device)
        self.generator = torch.Generator().manual_seed(spec.seed)

        build = self._build
        self.paths = {id(ref): path for path, _, ref in spec.component_refs()}
        dataset = build("dataset", spec.data)
        self.train_batches, self.val_batches = split_and_batch(dataset, spec, self.device, self.generator)
        self.model = build("model", spec.model).to(self.device)
        groups = None
        for index, ref in enumerate(spec.freeze):
            policy = build("freeze", ref)
            with input_errors(f"freeze[{index}]: applying {ref.name!r} failed"):
                result = policy(self.model)
            groups = result if result is not None else groups
        self.frozen_eval = [m for m in self.model.modules() if not m.training]
        parameters = groups if groups is not None else [p for p in self.model.parameters() if p.requires_grad]
        if not parameters:
            raise UserInputError("freeze: the policies leave no trainable parameter; nothing would train")
        self.optimizer = build("optimizer", spec.optimizer, parameters=parameters)
        self.loss = LossSum(unique_keys([ref.name.split("::")[-1] for ref in spec.loss]),
                            [self._on_device(build("loss", ref, model=self.model)) for ref in spec.loss],
                            [ref.weight for ref in spec.loss])
        self.precision = build("precision", spec.precision, device=self.device)
        accumulate = spec.trainer.accumulate_grad_batches
        batches = len(self.train_batches)
        self.info = RunInfo(epochs=spec.trainer.epochs, steps_per_epoch=math.ceil(batches / accumulate),
                            batches_per_epoch=batches, accumulate=accumulate)
        self.schedulers = build_schedulers(spec, registry, build, self.optimizer, self.info)
        self.last_update_lrs: dict[str, float] | None = None
        self.callbacks = [build("callback", ref) for ref in spec.callbacks]
        metric_names = unique_keys([ref.name.split("::")[-1] for ref in spec.metrics])
        self.metrics = {key: self._on_device(build("metric", ref)) for key, ref in zip(metric_names, spec.metrics)}
        self.hooks = self._run_hooks(self.callbacks)
        self._check_monitors()
        self._probe()

        self.run_dir = RunDir(run_dir or new_run_dir(spec.trainer.output_dir, spec.name))
        self.state = TrainState(model=self.model, optimizer=self.optimizer, run=self.info, device=self.device,
                                scaler=self.precision.scaler, run_dir=self.run_dir.path, log=self._log)
        self.best_value: float | None = None
        self.best_row: dict[str, float] = {}
        self.finished = False  # a resumed run that had already stopped early
        self.epoch_seconds: list[float] = []

    def _on_device(self, component: Any) -> Any:
        """Losses with tensor params (``pos_weight``) and metrics with state tensors
        (torchmetrics) move to the run's device."""
        return component.to(self.device) if callable(getattr(component, "to", None)) else component

    def _build(self, kind: str, ref: Any, **context: Any) -> Any:
        """Build one component; a failure here happens before any training, so it is an
        input error (exit code 2) naming the spec path, such as ``optimizer``."""
        path = self.paths.get(id(ref), kind)
        if getattr(ref, "import_", None) is not None:
            from torchtk.core.components import load_object

            with input_errors(f"{path}: building model {ref.import_!r} failed"):
                return load_object(ref.import_)(**ref.params)
        component = self.registry.resolve(kind, ref.name)
        params = ref.validated_params
        if params is None:
            params = self.registry.validate_params(component, ref.params)
        with input_errors(f"{path}: building {kind} {ref.name!r} failed"):
            return self.registry.build(component, params, **context)

    @staticmethod
    def _run_hooks(callbacks: list[Any]) -> RunHooks:
        return RunHooks(callbacks)

    def _probe(self) -> None:
        """One forward pass, each loss term and each metric on a few samples (eval mode,
        no grad, RNG untouched), so an output that does not fit a loss fails now, as an
        input error naming the spec path, and not in the first epoch."""
        import torch

        batch = self._probe_batch()
        if batch is None:
            return
        inputs, target = to_device(batch[0], self.device), to_device(batch[1], self.device)
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), self.precision.autocast():
                with input_errors("model: the forward pass fails on a batch of the data"):
                    output = self.model(inputs)
                for index, (name, term) in enumerate(zip(self.loss.names, self.loss.terms)):
                    with input_errors(f"loss[{index}]: {name!r} does not fit the model's output and the targets"):
                        term(output, target)
                for index, (name, metric) in enumerate(self.metrics.items()):
                    with input_errors(f"metrics[{index}]: {name!r} does not fit the model's output and the targets"):
                        copy.deepcopy(metric).update(output.float() if hasattr(output, "float") else output, target)
        finally:
            self.model.train()

    def _probe_batch(self) -> Any:
        """A few samples without drawing from any shuffling generator."""
        for batches in (self.val_batches, self.train_batches):
            if isinstance(batches, TensorBatches):
                return [t[: min(4, batches.batch_size)] for t in batches.tensors]
            if batches is not None:
                dataset = batches.dataset
                samples = [dataset[i] for i in range(min(4, len(dataset)))]
                return batches.collate_fn(samples)
        return None

    def logged_names(self) -> list[str]:
        names = ["train_loss"]
        if self.val_batches is not None:
            names += ["val_loss", *(f"val_{m}" for m in self.metrics)]
        return names

    def _check_monitors(self) -> None:
        available = self.logged_names()
        wanted = [("trainer.monitor", self.spec.trainer.monitor)]
        wanted += [(f"scheduler[{i}].monitor", s.monitor) for i, s in enumerate(self.schedulers) if s.needs_metric]
        wanted += [(f"callbacks[{i}].params.monitor", cb.monitor) for i, cb in enumerate(self.callbacks)
                   if isinstance(getattr(cb, "monitor", None), str)]
        for where, name in wanted:
            if name not in available:
                raise UserInputError(f"{where}: {name!r} is not logged by this run; logged: {', '.join(available)}")

    def _log(self, text: str) -> None:
        self.run_dir.log(text)
        self.reporter.message(text)

    # -- checkpoints -----------------------------------------------------------------

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        import torch

        return {
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "step": self.state.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedulers": [s.scheduler.state_dict() for s in self.schedulers],
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler is not None else None,
            "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in self.callbacks],
            "history": self.state.history,
            "best_value": self.best_value,
            "stopped_early": self.state.should_stop,
            "spec": spec_fingerprint(self.spec),
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
                    "python": list(random.getstate()[1]), "python_version": random.getstate()[0],
                    "python_gauss": random.getstate()[2]},
        }

    def restore(self, path: Path) -> int:
        """Load a checkpoint written by :meth:`checkpoint`; returns the next epoch."""
        import torch

        try:
            payload = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise UserInputError(f"--resume: no checkpoint at {path}") from None
        except Exception as exc:
            raise UserInputError(f"--resume: {path} is not a readable torchtk checkpoint (corrupt, truncated, or "
                                 f"not written by torchtk): {type(exc).__name__}") from exc
        if payload.get("version") != CHECKPOINT_VERSION:
            raise UserInputError(f"--resume: {path} has checkpoint format {payload.get('version')!r}; "
                                 f"this torchtk reads format {CHECKPOINT_VERSION}")
        differences = spec_differences(payload["spec"], spec_fingerprint(self.spec))
        if differences:
            raise UserInputError(f"--resume: this spec differs from the one {path.parent.parent} was started with, "
                                 f"at {', '.join(differences)}; only trainer settings such as epochs may change")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserInputError(f"--resume: {path} was not written by a run of this spec (model or optimizer "
                                 f"differ): {str(exc).splitlines()[0]}") from exc
        for scheduled, state in zip(self.schedulers, payload["schedulers"]):
            scheduled.scheduler.load_state_dict(state)
        if self.precision.scaler is not None and payload["scaler"] is not None:
            self.precision.scaler.load_state_dict(payload["scaler"])
        for callback, state in zip(self.callbacks, payload["callbacks"]):
            if state is not None:
                callback.load_state_dict(state)
        self.state.history = list(payload["history"])
        self.finished = payload["stopped_early"]
        self.state.step = payload["step"]
        self.best_value = payload["best_value"]
        if self.best_value is not None:
            monitor = self.spec.trainer.monitor
            self.best_row = next((r for r in self.state.history if r.get(monitor) == self.best_value), {})
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        self.generator.set_state(rng["generator"].cpu())
        random.setstate((rng["python_version"], tuple(rng["python"]), rng["python_gauss"]))
        return payload["epoch"] + 1

    # -- training ------------------------------------------------------------------------

    def fit(self, start_epoch: int = 1) -> RunResult:
        spec, state = self.spec, self.state
        trainer = spec.trainer
        self.run_dir.write_spec(spec.model_dump(mode="json"))
        self.run_dir.log(f"start: epochs {start_epoch}..{trainer.epochs}, device {self.device}, "
                         f"{self.info.batches_per_epoch} batches per epoch")
        self.reporter.start(self.run_dir.path, trainer.epochs, self.info.batches_per_epoch, start_epoch)
        hooks = self.hooks
        if self.finished and start_epoch > 1:
            self._log(f"this run already stopped early after epoch {start_epoch - 1}; nothing to resume")
            return self.result()
        if hooks.on_fit_start:
            hooks.on_fit_start(state)
        try:
            for epoch in range(start_epoch, trainer.epochs + 1):
                state.epoch = epoch
                started = time.perf_counter()
                self.reporter.epoch_start(epoch)
                row = {"epoch": epoch, **self.train_epoch(), **self.validate()}
                row.update(self.learning_rates())
                self.epoch_seconds.append(time.perf_counter() - started)
                for key in ("train_loss", "val_loss"):
                    if not math.isfinite(row.get(key, 0.0)):
                        raise RunFailed(f"{key} became {row[key]} in epoch {epoch}. " + _last_good(self))
                state.metrics = row
                state.history.append(row)
                self.step_schedulers("epoch", row)
                if hooks.on_epoch_end:
                    hooks.on_epoch_end(state)
                self.end_epoch(epoch, row)
                if state.should_stop:
                    break
            if hooks.on_fit_end:
                hooks.on_fit_end(state)
        finally:
            self.reporter.finish()
        self.run_dir.write_curves(state.history)
        self.run_dir.log("done")
        return self.result()

    def result(self) -> RunResult:
        history = self.state.history
        return RunResult(self.run_dir.path, history, self.best_row, history[-1] if history else {},
                         self.spec.trainer.monitor, self.state.should_stop or self.finished, self.epoch_seconds)

    def train_epoch(self) -> dict[str, float]:
        import torch

        model, optimizer, loss_fn, state = self.model, self.optimizer, self.loss, self.state
        scaler, autocast = self.precision.scaler, self.precision.autocast
        autocast = None if autocast is contextlib.nullcontext else autocast  # fp32: skip the context manager
        accumulate, device = self.info.accumulate, self.device
        log_every = self.spec.trainer.log_every_n_steps
        step_schedulers = [s.scheduler for s in self.schedulers if s.interval == "step"]
        on_step, on_step_end = self.hooks.on_step, self.hooks.on_step_end
        multi_term = len(loss_fn.terms) > 1
        total_sum = torch.zeros((), device=device)
        term_sums = [torch.zeros((), device=device) for _ in loss_fn.terms] if multi_term else []
        batches = self.info.batches_per_epoch
        # the last window may hold fewer batches: divide its losses by its own size
        last_window = batches % accumulate or accumulate
        last_window_start = batches - last_window
        move = not isinstance(self.train_batches, TensorBatches)  # TensorBatches live on the device already
        samples = 0
        model.train()
        for module in self.frozen_eval:  # what freeze policies put in eval (frozen norm statistics) stays there
            module.eval()
        for index, (inputs, target) in enumerate(self.train_batches):
            if move:
                inputs, target = to_device(inputs, device), to_device(target, device)
            if autocast is None:
                output = model(inputs)
                loss, values = loss_fn(output, target)
            else:
                with autocast():
                    output = model(inputs)
                    loss, values = loss_fn(output, target)
            size = batch_size(target)
            samples += size
            total_sum.add_(loss.detach(), alpha=size)
            for term_sum, value in zip(term_sums, values):
                term_sum.add_(value.detach(), alpha=size)
            scaled = loss if accumulate == 1 else loss / (accumulate if index < last_window_start else last_window)
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
            if (index + 1) % accumulate and index + 1 != batches:
                continue
            state.batch_index, state.loss = index, loss
            if scaler is not None:
                scaler.unscale_(optimizer)
            if on_step is not None:
                state.skip_step = False
                on_step(state)
            stepped = not state.skip_step
            if scaler is not None:
                if stepped:
                    scaler.step(optimizer)
                    stepped = not found_inf(scaler, optimizer)
                scaler.update()  # also after a skipped step: it resets the unscale_ bookkeeping
            elif stepped:
                optimizer.step()
            if stepped:
                state.step += 1
                if step_schedulers and index + 1 == batches:
                    self.last_update_lrs = self.current_lrs()
                for scheduler in step_schedulers:
                    scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if on_step_end is not None:
                on_step_end(state)
            if (index + 1) % log_every == 0:
                self.reporter.progress(index + 1, loss.item())
        self.reporter.progress(batches, float(loss.detach()))
        row = {"train_loss": total_sum.item() / samples}
        for name, term_sum in zip(loss_fn.names, term_sums):
            row[f"train_loss/{name}"] = term_sum.item() / samples
        return row

    def validate(self) -> dict[str, float]:
        import torch

        if self.val_batches is None:
            return {}
        model, loss_fn, device, autocast = self.model, self.loss, self.device, self.precision.autocast
        for metric in self.metrics.values():
            metric.reset()
        multi_term = len(loss_fn.terms) > 1
        total_sum = torch.zeros((), device=device, dtype=torch.float64)
        term_sums = [torch.zeros((), device=device, dtype=torch.float64) for _ in loss_fn.terms] if multi_term else []
        count = 0
        move = not isinstance(self.val_batches, TensorBatches)
        model.eval()
        with torch.no_grad():
            for inputs, target in self.val_batches:
                if move:
                    inputs, target = to_device(inputs, device), to_device(target, device)
                with autocast():
                    output = model(inputs)
                    loss, values = loss_fn(output, target)
                size = batch_size(target)
                count += size
                total_sum += loss.double() * size
                for term_sum, value in zip(term_sums, values):
                    term_sum += value.double() * size
                for metric in self.metrics.values():
                    metric.update(output.float() if hasattr(output, "float") else output, target)
        row = {"val_loss": total_sum.item() / count}
        for name, term_sum in zip(loss_fn.names, term_sums):
            row[f"val_loss/{name}"] = term_sum.item() / count
        for name, metric in self.metrics.items():
            row[f"val_{name}"] = float(metric.compute())
        return row

    def learning_rates(self) -> dict[str, float]:
        """The lr of every param group used by the epoch's last optimizer update, logged
        as ``lr`` (one group) or ``lr/group<i>``. Per-update schedulers have already
        stepped past it when the epoch ends, so their value is taken before that step."""
        snapshot, self.last_update_lrs = self.last_update_lrs, None
        return snapshot if snapshot is not None else self.current_lrs()

    def current_lrs(self) -> dict[str, float]:
        groups = self.optimizer.param_groups
        if len(groups) == 1:
            return {"lr": float(groups[0]["lr"])}
        return {f"lr/group{i}": float(group["lr"]) for i, group in enumerate(groups)}

    def step_schedulers(self, interval: str, row: dict[str, float]) -> None:
        for scheduled in self.schedulers:
            if scheduled.interval == interval:
                scheduled.step(row)

    def end_epoch(self, epoch: int, row: dict[str, float]) -> None:
        trainer = self.spec.trainer
        value = row[trainer.monitor]
        improved = math.isfinite(value) and (
            self.best_value is None or (value < self.best_value if trainer.mode == "min" else value > self.best_value))
        if improved:
            self.best_value, self.best_row = value, row
        payload = self.checkpoint(epoch)
        self.run_dir.save_checkpoint(payload, "last.pt")
        if improved:
            self.run_dir.save_checkpoint(payload, "best.pt")
        self.run_dir.write_history(self.state.history)
        self.run_dir.write_metrics({"monitor": trainer.monitor, "mode": trainer.mode, "best": self.best_row,
                                    "last": row, "epochs_run": len(self.state.history)})
        self.run_dir.log("epoch " + " ".join(f"{k}={v!r}" for k, v in row.items()))
        self.reporter.epoch_end(row)


def _last_good(run: Run) -> str:
    last = run.run_dir.checkpoints / "last.pt"
    if not last.exists():
        return "No checkpoint was written yet."
    return f"Last good checkpoint: {last}; continue with: tk train SPEC --resume {run.run_dir.path}"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so both keep the last good checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(spec: Any, *, registry: Registry | None = None, reporter: Reporter | None = None,
          resume: str | Path | None = None, overrides: list[str] | None = None) -> RunResult:
    """Train a spec (``RunSpec``, file path, bundled example name or dict).

    With ``resume``, continue the run in that directory from ``checkpoints/last.pt``;
    the spec must be the one that run was started with.
    """
    registry = registry or get_registry()
    if not (isinstance(spec, RunSpec) and not overrides):
        spec = load_spec(spec, overrides=overrides, registry=registry)
    else:
        from torchtk.core.spec import resolve_spec

        spec = resolve_spec(spec.model_copy(deep=True), registry)
    reporter = reporter or Reporter()
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None and not (resume_dir / "checkpoints" / "last.pt").exists():
        raise UserInputError(f"--resume {resume_dir}: no checkpoints/last.pt there to resume from")
    with sigterm_as_interrupt():
        try:
            run = Run(spec, registry, reporter, resume_dir)
        except KeyboardInterrupt:
            raise RunInterrupted("interrupted while building the run; nothing was written") from None
    try:
        start = run.restore(resume_dir / "checkpoints" / "last.pt") if resume_dir is not None else 1
        with sigterm_as_interrupt():
            return run.fit(start)
    except KeyboardInterrupt:
        message = "interrupted. " + _last_good(run)
        run.run_dir.log(message)
        raise RunInterrupted(message) from None
    except RunFailed as exc:
        run.run_dir.log(f"failed: {exc}")
        raise
    except TorchtkError as exc:
        run.run_dir.log(f"failed: {exc}")
        raise
    except Exception as exc:
        run.run_dir.log(f"failed: {type(exc).__name__}: {exc}")
        raise RunFailed(f"the run failed in epoch {run.state.epoch}: {type(exc).__name__}: {exc}. "
                        + _last_good(run)) from exc
    finally:
        run.run_dir.close()
