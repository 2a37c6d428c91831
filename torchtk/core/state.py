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

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class Precision:
    """What a ``precision_context`` hook returns.

    ``autocast`` is called once per forward pass and returns a context manager;
    ``scaler`` is a ``torch.amp.GradScaler`` for float16, else ``None``.
    """

    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    scaler: Any = None


@dataclass
class TrainState:
    """The live state of a run, passed to every run hook.

    Callbacks read it and may set ``skip_step`` (in ``on_step``) or ``should_stop``
    (in ``on_epoch_end``). ``loss`` is the current step's loss tensor; reading its
    value with ``.item()`` synchronises with the device, so do it sparingly.
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
    skip_step: bool = False
    should_stop: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    run_dir: Any = None
    log: Callable[[str], None] = print

    def __repr__(self) -> str:  # short: hook tracing prints it at every call
        return f"TrainState(epoch={self.epoch}, step={self.step}, batch_index={self.batch_index})"
