"""``tensorboard``: TensorBoard event files through ``torch.utils.tensorboard.SummaryWriter``.

Every scalar of each epoch's row (losses and their terms, metrics, lr per group, the
columns callbacks add, such as ``grad_norm``) is written under its ``history.csv`` column
name, plus ``epoch``. The x-axis is the optimizer step (updates so far), as Lightning
does, so per-update scalars (``log_steps``: ``step/loss``, ``step/lr``,
``step/grad_norm`` at the logging interval) share it with the epoch values. A resumed
run purges what the interrupted run wrote after its checkpoint (``purge_step``), so
the curves read as if it had never stopped. The writer opens at fit start (nothing is
written when building the run fails) and is closed at fit end and on an exception.

The ``tensorboard`` package is an optional extra (``pip install 'torchtk[tensorboard]'``);
without it, building the callback fails before training with that install hint.
"""

from __future__ import annotations

from pathlib import Path

from torchtk import TorchtkError, hookimpl

INSTALL_HINT = ("the tensorboard callback writes event files through torch.utils.tensorboard, which needs the "
                "tensorboard package; install it with pip install 'torchtk[tensorboard]' (or pip install tensorboard)")


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or an error with the install hint."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # ModuleNotFoundError included: tensorboard missing or broken
        raise TorchtkError(INSTALL_HINT) from None
    return SummaryWriter


class TensorBoard:
    def __init__(self, params) -> None:
        self.params = params
        self.writer_class = summary_writer_class()  # at build time: a missing package stops the run before training
        self.writer = None
        self.pending: dict | None = None
        self.log_dir: Path | None = None

    def directory(self, state) -> Path:
        if self.params.log_dir is None:
            return Path(state.run_dir) / "tensorboard"
        return Path(self.params.log_dir) / Path(state.run_dir).name  # one subdirectory per run, to compare runs

    @hookimpl
    def on_fit_start(self, state):
        if not state.is_main or state.run_dir is None:
            return
        self.log_dir = self.directory(state)
        self.writer = self.writer_class(log_dir=str(self.log_dir), purge_step=state.step + 1 if state.step else None)

    @hookimpl
    def on_step(self, state):
        if self.writer is not None and self.params.log_steps and (state.batch_index + 1) % state.log_every_n_steps == 0:
            from torchtk.core.stepper import current_lrs

            self.pending = current_lrs(state.optimizer, model=state.model)  # this update's lr, before a scheduler steps

    @hookimpl
    def on_step_end(self, state):
        if self.pending is None:
            return
        lrs, self.pending = self.pending, None
        if state.skip_step:
            return
        writer, step = self.writer, state.step
        if state.logged_loss is not None:
            writer.add_scalar("step/loss", state.logged_loss, step)
        for key, value in lrs.items():
            writer.add_scalar(f"step/{key}", value, step)
        if state.grad_norm is not None:
            writer.add_scalar("step/grad_norm", float(state.grad_norm), step)

    @hookimpl
    def on_epoch_end(self, state):
        if self.writer is None:
            return
        for key, value in state.metrics.items():
            self.writer.add_scalar(key, float(value), state.step)
        self.writer.flush()  # an epoch's values are visible in a running TensorBoard at once

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    @hookimpl
    def on_fit_end(self, state):
        self.close()

    @hookimpl
    def on_exception(self, state, exception):
        self.close()
