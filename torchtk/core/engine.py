"""The training loop: ``train()`` resolves the spec once, builds the run's parts through
:mod:`torchtk.core.assembly`, and :class:`Run` loops over epochs.

Everything else has its own module: the optimizer step (``stepper``), the passes over
data (``loop``), checkpoints and resume (``checkpoint``), the process layout
(``distributed``), the live state (``state``), the callbacks' hooks (``run_hooks``).
The device is read (``.item()``) only every ``trainer.log_every_n_steps`` batches and
at epoch ends; run hooks nobody configured are never called.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from torchtk.core.assembly import Parts, build_parts
from torchtk.core.checkpoint import CheckpointService
from torchtk.core.data import batch_limits
from torchtk.core.distributed import Placement, placement_for
from torchtk.core.errors import (BUILD_INTERRUPTED, RunFailed, RunInterrupted, TorchtkError, UserInputError,
                                 interrupted, raise_if_interrupted, sigterm_as_interrupt)
from torchtk.core.loop import evaluate, train_epoch
from torchtk.core.outputs import new_run_dir
from torchtk.core.progress import Reporter
from torchtk.core.registry import Registry, get_registry
from torchtk.core.spec import ResolvedSpec, RunSpec, load_resolved, resolve
from torchtk.core.state import TrainState
from torchtk.core.stepper import Stepper, current_lrs

__all__ = ["Run", "RunInterrupted", "RunResult", "train"]


@dataclass
class RunResult:
    """What ``torchtk.train`` returns.

    ``model`` is the trained ``nn.Module`` itself (never a process wrapper), as the run
    left it: with the best weights when ``early_stopping``'s ``restore_best`` loaded them
    at the end, else the last epoch's. ``best_checkpoint`` is ``checkpoints/best.pt``
    (``None`` when no epoch ever improved the monitored value), ``last_checkpoint``
    ``checkpoints/last.pt`` (``None`` when a ``checkpoint`` callback with
    ``keep_last: false`` removed it); both load with ``torch.load(path, weights_only=True)``.
    """

    run_dir: Path
    history: list[dict[str, float]]
    best: dict[str, float]
    last: dict[str, float]
    monitor: str
    stopped_early: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    model: Any = None
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    fast_dev_run: int = 0  # batches of train and val a fast_dev_run ran (0: a normal run)
    kept: bool = True  # False: the run directory was temporary and is gone (fast_dev_run)

    @property
    def best_value(self) -> float:
        return self.best.get(self.monitor, math.nan)


class Run:
    """One training run: its parts, its live state, and the epoch loop."""

    def __init__(self, spec: RunSpec | ResolvedSpec, registry: Registry, reporter: Reporter,
                 run_dir: Path | None, placement: Placement | None = None) -> None:
        resolved = spec if isinstance(spec, ResolvedSpec) else resolve(spec, registry)
        self.spec, self.reporter = resolved.spec, reporter
        self.placement = placement or placement_for(self.spec.trainer.device,
                                                    sync_batchnorm=self.spec.trainer.sync_batchnorm)
        if not self.placement.is_main:  # only rank 0 prints
            self.reporter = Reporter()
        self.parts: Parts = build_parts(resolved, self.placement)
        raise_if_interrupted()  # a signal whose KeyboardInterrupt a C extension swallowed: before any file exists
        parts = self.parts
        self.stepper = Stepper(parts, self.placement)
        trainer = self.spec.trainer
        keep = run_dir is not None or not trainer.fast_dev_run or trainer.keep_dev_run
        self.scratch = None if keep else Path(tempfile.mkdtemp(prefix=f"torchtk-{self.spec.name}-dev-"))
        self.run_dir = self.placement.open_run_dir(run_dir, lambda: new_run_dir(self.scratch or trainer.output_dir,
                                                                               self.spec.name))
        self.state = TrainState(model=parts.model, optimizer=parts.optimizer, run=parts.info, device=parts.device,
                                scaler=parts.precision.scaler, run_dir=self.run_dir.path, log=self._log,
                                is_main=self.placement.is_main,
                                log_every_n_steps=self.spec.trainer.log_every_n_steps, train_batches=parts.train)
        self.checkpoints = self.state.checkpoints = CheckpointService(parts, self.state, self.run_dir, self.placement)
        self.epoch_seconds: list[float] = []
        self._epoch_end_hooks: dict[frozenset[str], Any] = {}

    # what tests and plugins read of a run
    optimizer = property(lambda self: self.parts.optimizer)
    schedulers = property(lambda self: self.parts.schedulers)
    info = property(lambda self: self.parts.info)

    def _log(self, text: str) -> None:
        self.run_dir.log(text)
        self.reporter.message(text)

    def restore(self, path: Path) -> int:
        """Continue from the checkpoint at ``path``; returns the next epoch."""
        return self.checkpoints.restore(path)

    def fit(self, start_epoch: int = 1) -> RunResult:
        spec, state, hooks = self.spec, self.state, self.parts.hooks
        if self.placement.is_main:
            self.run_dir.write_spec(spec.model_dump(mode="json"))
        device, precision, info = self.parts.device, self.parts.precision_name, self.parts.info
        # epochs and batches after the dev-run switches; the process, so `tk runs` can tell running from killed
        self.run_dir.log(f"start: epochs {start_epoch}..{info.epochs}, device {device}, precision {precision}, "
                         f"{info.batches_per_epoch} batches per epoch, "
                         f"pid {os.getpid()} on host {socket.gethostname()}")
        self.reporter.start(self.run_dir.path, info.epochs, info.batches_per_epoch, start_epoch,
                            setup=f"{device}, {precision}", batch_size=spec.data.batch_size * self.placement.world_size)
        for note in self.parts.notes:  # what the build did: weights loaded, tensors a policy froze
            self._log(note)
        if state.should_stop and start_epoch > 1:
            self._log(f"this run already stopped early after epoch {start_epoch - 1}; nothing to resume")
            return self.result()
        if hooks.on_fit_start:
            hooks.on_fit_start(state)
        if start_epoch > 1:  # what a kill left behind: a stale best.pt, temporary files, stale metrics.json
            self.checkpoints.after_resume()
            if self.placement.is_main and state.history:
                self.write_summary(state.history[-1])
        from torchtk.core.curves import CurvesDrawer

        drawer = CurvesDrawer.start() if self.placement.is_main else None  # imports matplotlib while we train
        try:
            for epoch in range(start_epoch, info.epochs + 1):
                self.end_epoch(self.run_epoch(epoch))
                if state.should_stop:
                    break
            raise_if_interrupted()
            if hooks.on_fit_end:
                hooks.on_fit_end(state)
            if state.should_stop and state.history:
                self._log(f"stopped early at epoch {state.history[-1]['epoch']}")
        except BaseException:
            if drawer is not None:
                drawer.close()
            raise
        finally:
            self.reporter.finish()
        if self.placement.is_main:  # the result durable first, then the plot
            self.run_dir.sync_summary()
            self.run_dir.write_curves(state.history, spec.name, spec.trainer.monitor, state.best_row.get("epoch"),
                                      drawer)
        self.run_dir.log("done")
        return self.result()

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, validate, step the per-epoch schedulers; returns the epoch's row."""
        parts, state, hooks = self.parts, self.state, self.parts.hooks
        raise_if_interrupted()  # once per epoch: a signal whose KeyboardInterrupt was lost stops the run here
        state.epoch = epoch
        if state.epoch_values:
            state.epoch_values.clear()
        started = time.perf_counter()
        self.reporter.epoch_start(epoch)
        if hooks.on_epoch_start:
            hooks.on_epoch_start(state)
        row: dict[str, float] = {"epoch": epoch}
        row.update(train_epoch(parts, state, self.stepper, self.placement, self.reporter,
                               self.spec.trainer.log_every_n_steps))
        if state.epoch_values:  # columns callbacks add (grad_norm): one host read per epoch
            row.update({key: float(value) for key, value in state.epoch_values.items()})
        if parts.val is not None and parts.info.validates(epoch):  # trainer.val_every_n_epochs
            if hooks.on_validation_start:
                hooks.on_validation_start(state)
            row.update(evaluate(parts, parts.val, self.placement))
            state.metrics = row
            if hooks.on_validation_end:
                hooks.on_validation_end(state)
        row.update(self.learning_rates())
        self.epoch_seconds.append(time.perf_counter() - started)
        for key in ("train_loss", "val_loss"):
            if not math.isfinite(row.get(key, 0.0)):
                raise RunFailed(f"{key} became {row[key]} in epoch {epoch}. " + self.checkpoints.last_good())
        state.metrics = row
        state.history.append(row)
        for scheduled in parts.schedulers:  # one that needs a metric steps on the epochs that log it
            if scheduled.interval == "epoch" and (not scheduled.needs_metric or scheduled.monitor in row):
                scheduled.step(row)
        on_epoch_end = self.epoch_end_hooks(row)
        if on_epoch_end:
            on_epoch_end(state)
        state.should_stop = self.placement.agree(state.should_stop)  # a stop on any process stops all, before
        return row  # the checkpoint records it

    def epoch_end_hooks(self, row: dict[str, float]) -> Any:
        """``on_epoch_end`` of the callbacks to call after ``row``: all of them, except, on an
        epoch that did not validate (``trainer.val_every_n_epochs``), those whose ``monitor``
        this row does not log (early stopping, a checkpoint policy): their decisions are
        taken on validated epochs only."""
        skipped = frozenset(key for key, callback in self.parts.callbacks.items()
                            if isinstance(getattr(callback, "monitor", None), str) and callback.monitor not in row)
        if not skipped:
            return self.parts.hooks.on_epoch_end
        if skipped not in self._epoch_end_hooks:
            from torchtk.core.run_hooks import RunHooks

            kept = [callback for key, callback in self.parts.callbacks.items() if key not in skipped]
            self._epoch_end_hooks[skipped] = RunHooks(kept).on_epoch_end
        return self._epoch_end_hooks[skipped]

    def learning_rates(self) -> dict[str, float]:
        """The lr of every param group used by the epoch's last optimizer update, logged
        as ``lr`` (one group) or ``lr/<group name>``. Per-update schedulers have already
        stepped past it when the epoch ends, so the stepper took it before that step."""
        snapshot, self.state.last_update_lrs = self.state.last_update_lrs, None
        parts = self.parts
        return snapshot if snapshot is not None else current_lrs(parts.optimizer, parts.per_group_lrs, parts.model)

    def end_epoch(self, row: dict[str, float]) -> None:
        """Track the best epoch, write the checkpoints, history, metrics and log line."""
        trainer, state = self.spec.trainer, self.state
        value = row.get(trainer.monitor, math.nan)  # absent on an epoch that did not validate: no best then
        best = state.best_value
        improved = math.isfinite(value) and (best is None or (value < best if trainer.mode == "min" else value > best))
        if improved:
            state.best_value, state.best_row = value, row
        due = row["epoch"] % trainer.checkpoint_every == 0 or row["epoch"] == self.parts.info.epochs \
            or state.should_stop  # trainer.checkpoint_every; the run's last epoch always
        names = (("last.pt",) if due else ()) + (("best.pt",) if improved else ())
        if names:
            self.checkpoints.save(*names)
        if self.placement.is_main:
            self.write_summary(row, durable=False)  # the checkpoint holds the history; fsynced when the run ends
            if improved:  # metrics that write files (confusion_matrix.png) do so for the best epoch
                for metric in self.parts.metrics.values():
                    if callable(getattr(metric, "write_best", None)):
                        metric.write_best(self.run_dir.path, row["epoch"])
            self.run_dir.log(f"epoch {row['epoch']} " + " ".join(f"{k}={v!r}" for k, v in row.items() if k != "epoch"))
        self.reporter.epoch_end(row, best=improved)
        if state.epoch_notes:  # what callbacks decided about this epoch, after its row
            for note in state.epoch_notes:
                self._log(note)
            state.epoch_notes.clear()

    def write_summary(self, row: dict[str, float], durable: bool = True) -> None:
        """``history.csv`` and ``metrics.json`` as the state stands after ``row``'s epoch."""
        trainer, state = self.spec.trainer, self.state
        self.run_dir.write_history(state.history, durable)
        summary = {"monitor": trainer.monitor, "mode": trainer.mode, "best": state.best_row, "last": row,
                   "epochs_run": len(state.history)}
        if self.parts.classes is not None:
            summary["classes"] = self.parts.classes
        if state.summary_extras:  # what callbacks list there (the checkpoint policy's files)
            summary.update(state.summary_extras)
        self.run_dir.write_metrics(summary, durable)

    def result(self) -> RunResult:
        history = self.state.history
        best, last = (self.checkpoints.directory / name for name in ("best.pt", "last.pt"))
        kept = self.scratch is None  # a fast_dev_run's checkpoints go with its temporary directory
        return RunResult(self.run_dir.path, history, self.state.best_row, history[-1] if history else {},
                         self.spec.trainer.monitor, self.state.should_stop, self.epoch_seconds, self.parts.model,
                         best if best.exists() and kept else None, last if last.exists() and kept else None,
                         fast_dev_run=batch_limits(self.spec.trainer)[0][1] if self.spec.trainer.fast_dev_run else 0,
                         kept=kept)

    def fail(self, exc: BaseException) -> NoReturn:
        """End the run on ``exc``: tell the callbacks, log it, raise what the user sees.

        A signal is an interruption (exit 130) however it surfaced; a ``TorchtkError`` is
        shown as it is; anything else, ``SystemExit`` included (a plugin calling
        ``sys.exit`` does not end a run cleanly), fails the run (exit 1) naming the
        component that raised it (:mod:`torchtk.core.failures`).
        """
        on_exception = self.parts.hooks.on_exception
        if on_exception is not None:
            try:
                on_exception(self.state, exc)
            except Exception as hook_error:  # never hides the original error
                self._log_quietly(f"on_exception failed: {type(hook_error).__name__}: {hook_error}")
        if self.placement.interrupted(exc):  # a signal here, or (several processes) on another one
            message = "interrupted. " + self.checkpoints.last_good()
            self._log_quietly(message)
            raise RunInterrupted(message) from None
        if isinstance(exc, TorchtkError):
            self._log_quietly(f"failed: {exc}")
            raise exc
        if self.spec.trainer.compile:  # torch.compile fails at the model's first call, inside the loop
            from torchtk.core.speed import compile_failure

            failure = compile_failure(exc)
            if failure is not None:
                self._log_quietly(f"failed: {failure}")
                raise failure from None
        from torchtk.core.failures import describe

        what = describe(self.parts, exc)
        self._log_quietly(f"failed in epoch {self.state.epoch}: {what}")
        raise RunFailed(f"the run failed in epoch {self.state.epoch}: {what}. " + self.checkpoints.last_good()) from exc

    def _log_quietly(self, text: str) -> None:
        """A ``train.log`` line while a run fails: a full disk must not hide the error."""
        try:
            self.run_dir.log(text)
        except OSError:
            pass


def train(spec: Any, *, registry: Registry | None = None, progress: Any = "auto",
          resume: str | Path | None = None, overrides: list[str] | None = None,
          reporter: Reporter | None = None, plugins: list[str] | None = None, **objects: Any) -> RunResult:
    """Train a spec (``RunSpec``, file path, bundled example name or dict); returns a
    :class:`RunResult` with the history, the trained ``model`` and the checkpoints' paths.

    ``progress``: ``"auto"`` shows what ``tk train`` shows (progress bar and epoch table)
    in a terminal or a Jupyter notebook and nothing elsewhere; ``True``/``"rich"``,
    ``"plain"`` (one line per epoch), ``False``/``None``, or a ``Reporter`` instance
    choose (see :mod:`torchtk.core.progress_choice`); the spec's ``trainer.progress:
    false`` prints epoch lines instead of the bar. ``reporter=`` is the older
    spelling of ``progress=<Reporter>`` and wins when given.
    With ``resume``, continue the run in that directory from ``checkpoints/last.pt``;
    the spec must be the one that run was started with.

    ``plugins``: plugin files or modules to load for this run, as ``tk train -p``.
    Components may be given as objects by slot, ``model=net``, ``loss=fn`` (or a list),
    ``optimizer=partial(torch.optim.SGD, lr=0.1)``, ``callbacks=[cb]``: they replace the
    spec's entry there (see :mod:`torchtk.core.spec.objects`), and ``spec.json`` records
    them as ``<python object: module.qualname>``.
    """
    with sigterm_as_interrupt():
        run, resume_dir = _build_run(spec, registry, progress, reporter, resume, overrides, plugins or [], objects)
        try:
            start = run.restore(resume_dir / "checkpoints" / "last.pt") if resume_dir is not None else 1
            return run.fit(start)
        except BaseException as exc:
            run.fail(exc)
        finally:
            run.run_dir.close()
            if run.scratch is not None:  # a fast_dev_run's temporary run directory: nothing is kept
                shutil.rmtree(run.scratch, ignore_errors=True)


def _build_run(spec: Any, registry: Registry | None, progress: Any, reporter: Reporter | None,
               resume: str | Path | None, overrides: list[str] | None, plugins: list[str] | None = None,
               objects: dict[str, Any] | None = None) -> tuple[Run, Path | None]:
    """Resolve the spec and build the :class:`Run` (see :func:`train`). A signal during it
    (``import torch`` happens here) is an interruption, however it surfaced: as a
    ``KeyboardInterrupt`` or as an error it caused (a module left half-imported)."""
    from torchtk.core.progress_choice import choose_reporter, without_bar

    try:
        reporter = choose_reporter(reporter if reporter is not None else progress)
        registry = registry or get_registry()
        if isinstance(spec, RunSpec) and not overrides and not objects:
            resolved = resolve(spec.model_copy(deep=True), registry, plugins=plugins or ())
        else:
            resolved = load_resolved(spec, overrides=overrides, registry=registry, plugins=plugins or (),
                                     objects=objects)
        reporter = without_bar(reporter, resolved.spec.trainer.progress)
        resume_dir = Path(resume) if resume is not None else None
        if resume_dir is not None and not (resume_dir / "checkpoints" / "last.pt").exists():
            raise UserInputError(f"--resume {resume_dir}: no checkpoints/last.pt there to resume from")
        if resolved.spec.trainer.fast_dev_run and resume_dir is not None:
            raise UserInputError("trainer.fast_dev_run: a dev run does not resume a run; drop --resume or set it "
                                 "to false")
        run = Run(resolved, registry, reporter, resume_dir)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or (interrupted() and not isinstance(exc, RunInterrupted)):
            raise RunInterrupted(BUILD_INTERRUPTED) from None
        raise
    # how to continue this run: the spec the user named (a file or example), else the resolved spec.json
    run.checkpoints.source = str(spec) if isinstance(spec, (str, Path)) and not overrides and not plugins else None
    return run, resume_dir
