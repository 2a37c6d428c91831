"""Objects the engine hands to plugins: run facts, the live training state, precision."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager


@dataclass(frozen=True)
class RunInfo:
    """Facts about a run that schedulers and callbacks may size themselves by.

    A "step" is always one optimizer update (after gradient accumulation).
    """

    epochs: int
    steps_per_epoch: int
    batches_per_epoch: int
    accumulate: int = 1
    val_every_n_epochs: int = 1

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def validates(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) validates: every ``val_every_n_epochs``-th, and the last."""
        return epoch % self.val_every_n_epochs == 0 or epoch == self.epochs


@dataclass
class Precision:
    """What a ``precision_context`` hook returns: what the engine does for a precision.

    ``autocast`` is called once per forward pass and returns a context manager;
    ``scaler`` is a ``torch.amp.GradScaler`` for float16, else ``None``.
    ``param_dtype`` (a ``torch.dtype``, or ``None``: leave as built): the model's
    floating-point parameters and buffers, and loss modules, are converted to it after
    the freeze policies and before the optimizer is built. ``input_dtype`` (or ``None``:
    no cast, no per-batch work): floating-point inputs and targets are cast to it
    (in-memory data once, loaded batches as they reach the device). Pure low precision
    (Lightning's ``bf16-true``) sets both and no autocast.
    """

    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    scaler: Any = None
    param_dtype: Any = None
    input_dtype: Any = None


@dataclass
class Splits:
    """What a ``make_dataset`` hook returns for data that comes with its own validation
    part (an image folder with ``train/`` and ``val/``): the run uses these splits as
    they are, and ``data.val_split`` is ignored. ``val=None``: no validation."""

    train: Any
    val: Any = None


# the fields of TrainState a checkpoint keeps (everything else is rebuilt from the spec)
RESUMABLE = ("epoch", "step", "history", "best_value", "best_row", "should_stop", "last_update_lrs")


@dataclass
class TrainState:
    """The live state of a run, passed to every run hook.

    Callbacks read it and may set ``skip_step`` (in ``on_step``) or ``should_stop``
    (in ``on_epoch_end``), add columns to the epoch's row (``epoch_values``, read once per
    epoch, so a callback may keep device tensors there), messages shown after the
    epoch's row (``epoch_notes``), entries of ``metrics.json`` (``summary_extras``), and share the update's gradient norm (``grad_norm``). ``loss`` is the current step's loss tensor; reading its
    value with ``.item()`` synchronises with the device, so do it sparingly:
    ``logged_loss`` is the value read at the last logging interval, free to reuse.

    Everything that must survive a resume (epoch, step, history, best value and row,
    the stopped flag, the lrs of the last update) lives here and goes through
    :meth:`state_dict` / :meth:`load_state_dict`; the objects (model, optimizer, ...)
    are checkpointed by their own ``state_dict``.
    """

    model: Any
    optimizer: Any
    run: RunInfo
    device: Any
    scaler: Any = None
    epoch: int = 0
    step: int = 0
    batch_index: int = 0
    loss: Any = None
    logged_loss: float | None = None
    skip_step: bool = False
    should_stop: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_row: dict[str, float] = field(default_factory=dict)
    last_update_lrs: dict[str, float] | None = None
    is_main: bool = True
    run_dir: Any = None
    checkpoints: Any = None  # the run's CheckpointService: ``state.checkpoints.save("epoch3.pt")``
    log: Callable[[str], None] = print
    # seams callbacks write (none of them is resumable: they describe the current epoch or update)
    log_every_n_steps: int = 50  # trainer.log_every_n_steps: ``logged_loss`` is fresh after batches it divides
    grad_norm: Any = None  # the current update's total gradient norm (a tensor) where a callback computed it
    epoch_values: dict[str, Any] = field(default_factory=dict)  # extra columns of this epoch's row (floats or
    # 0-dim tensors, read once when the training pass ends); emptied at every epoch start
    epoch_notes: list[str] = field(default_factory=list)  # messages logged after this epoch's row
    summary_extras: dict[str, Any] = field(default_factory=dict)  # extra entries of metrics.json (plain data)
    # the run's training batches, (inputs, target) pairs, for callbacks that pass over the data (swa's BatchNorm
    # update); batches a DataLoader gives are not on the device yet. Iterating them draws from the run's random
    # generators (the shuffle): save and restore those (``generator``) to leave the training order unchanged
    train_batches: Any = None

    def state_dict(self) -> dict[str, Any]:
        """The resumable part of the state, as plain data (``torch.load(weights_only=True)`` reads it)."""
        return {name: getattr(self, name) for name in RESUMABLE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in RESUMABLE:
            value = state[name]
            setattr(self, name, list(value) if name == "history" else value)

    def __repr__(self) -> str:  # short: hook tracing prints it at every call
        return f"TrainState(epoch={self.epoch}, step={self.step}, batch_index={self.batch_index})"
