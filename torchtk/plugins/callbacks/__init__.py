"""Step and epoch callbacks: gradient clipping, NaN guard, early stopping (with the best
weights restored), EMA of the weights, a checkpoint policy, a per-update step log and
TensorBoard event files.

Each is an ordinary component: a params model declared here (cheap, no torch), and an
object built by ``make_callback`` whose ``@torchtk.hookimpl`` methods are run hooks.
The implementations live in the sibling modules and import torch only when built.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from torchtk import Component, Params, hookimpl


class GradClipParams(Params):
    """Clip the gradients before every optimizer update (after fp16 unscaling), by their
    total norm (``max_norm``) or element-wise by value (``clip_value``): give exactly one.
    With ``log_norm``, the total gradient norm before clipping is logged as the
    ``grad_norm`` column of the epoch row: the mean over the epoch's updates whose norm
    was finite (read once per epoch). The norm of each update is shared with later
    callbacks as ``state.grad_norm`` either way (``step_log`` writes it)."""

    max_norm: float | None = Field(None, gt=0, description="Largest allowed total gradient norm (clip by norm).")
    clip_value: float | None = Field(None, gt=0, description="Clamp every gradient element to [-v, v] (clip by value).")
    norm_type: Union[Annotated[float, Field(gt=0)], Literal["inf"]] = Field(
        2.0, description="Order of the norm: 2 = Euclidean, \"inf\" = the largest absolute element (max-norm), "
                         "as torch's norm_type=\"inf\" (a spec holds no infinite number).")
    log_norm: bool = Field(False, description="Add the epoch's mean total gradient norm as a grad_norm column.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "GradClipParams":
        if (self.max_norm is None) == (self.clip_value is None):
            raise ValueError("give exactly one of max_norm (clip by norm) or clip_value (clip by value)")
        return self


class NanGuardParams(Params):
    """Check the loss and the gradients of every optimizer update for inf/NaN (in
    ``on_step``, one host sync per update), and skip that update or stop the run with a
    message naming the epoch and step. A skipped update does not step the scheduler,
    and its batch is left out of the epoch's mean train_loss (with gradient accumulation
    only the window's last batch is: a non-finite loss earlier in the window still
    reaches the mean, which the engine rejects). ``stop`` ends the run at the first one
    (exit 1), keeping the last good checkpoint."""

    mode: Literal["skip", "stop"] = Field("skip", description="skip the update, or stop the run (exit 1).")


class EarlyStoppingParams(Params):
    """Stop training when a monitored value has not improved for ``patience`` epochs;
    with ``restore_best``, load the best weights (``checkpoints/best.pt``, kept by
    ``trainer.monitor``) back into the model at the end."""

    monitor: str = Field("val_loss", description="Logged value to watch, e.g. val_loss or val_accuracy.")
    patience: int = Field(3, ge=1, description="Epochs without improvement before stopping.")
    mode: Literal["min", "max"] = Field("min", description="Whether lower (min) or higher (max) is better.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")
    restore_best: bool = Field(False, description="At the end, load checkpoints/best.pt's weights into the model.")


class EmaParams(Params):
    """Keep an exponential moving average of the weights (torch.optim.swa_utils.AveragedModel
    with get_ema_multi_avg_fn), updated after every real optimizer update and kept in the
    checkpoint; optionally validate with the averaged weights."""

    decay: float = Field(0.999, gt=0, lt=1, description="Weight of the old average at each update.")
    warmup: bool = Field(False, description="Use min(decay, (1 + t) / (10 + t)) at update t, as timm does.")
    for_validation: bool = Field(False, description="Validate with the averaged weights (the val_* values, hence best.pt's epoch).")


class CheckpointParams(Params):
    """Write extra checkpoints every N epochs, keep the top k by a monitored value (file
    names carry the epoch and the value, metrics.json lists them), and keep last.pt or not."""

    monitor: str = Field("val_loss", description="Logged value that ranks the checkpoints.")
    mode: Literal["min", "max"] = Field("min", description="Whether lower (min) or higher (max) is better.")
    save_top_k: int = Field(1, ge=-1, description="How many to keep (-1: every one written, 0: none).")
    every_n_epochs: int = Field(1, ge=1, description="Offer every N-th epoch to the top k.")
    keep_last: bool = Field(True, description="Keep checkpoints/last.pt when the run completes.")


class StepLogParams(Params):
    """Write the loss, lr and gradient norm of every trainer.log_every_n_steps-th batch's
    update to steps.csv in the run directory (no extra device sync for the loss)."""


class TensorBoardParams(Params):
    """Write TensorBoard event files (torch.utils.tensorboard): every scalar of each
    epoch's row (losses, metrics, lr, grad_norm) under its history.csv name, against the
    optimizer step; optionally the loss and lr of every trainer.log_every_n_steps-th
    batch's update. Needs the optional tensorboard package:
    pip install 'torchtk[tensorboard]'. View with tensorboard --logdir <log dir>."""

    log_dir: str | None = Field(None, min_length=1, description=(
        "Directory for the event files; null means <run dir>/tensorboard. A directory given here gets one "
        "subdirectory per run (named like the run directory), so one TensorBoard compares runs."))
    log_steps: bool = Field(False, description=(
        "Also log step/loss, step/lr (and step/grad_norm when grad_clip computes it) at every "
        "trainer.log_every_n_steps-th batch."))


_IMPLEMENTATIONS = {
    "tensorboard": "torchtk.plugins.callbacks.tensorboard:TensorBoard",
    "step_log": "torchtk.plugins.callbacks.step_log:StepLog",
    "checkpoint": "torchtk.plugins.callbacks.checkpointing:CheckpointPolicy",
    "ema": "torchtk.plugins.callbacks.ema:Ema",
    "grad_clip": "torchtk.plugins.callbacks.clipping:GradClip",
    "nan_guard": "torchtk.plugins.callbacks.nan_guard:NanGuard",
    "early_stopping": "torchtk.plugins.callbacks.early_stopping:EarlyStopping",
}


@hookimpl
def register_components(register):
    register(Component("callback", "grad_clip", "Clip gradients by total norm or by value; log grad_norm.",
                       params=GradClipParams, aliases=("gradient_clipping",)))
    register(Component("callback", "nan_guard", "Skip or stop on a non-finite loss or gradient.",
                       params=NanGuardParams))
    register(Component("callback", "ema", "Exponential moving average of the weights.", params=EmaParams))
    register(Component("callback", "checkpoint", "Top-k checkpoints by a monitored value, every N epochs.",
                       params=CheckpointParams, aliases=("model_checkpoint",)))
    register(Component("callback", "step_log", "Per-update loss, lr and grad norm into steps.csv.",
                       params=StepLogParams))
    register(Component("callback", "early_stopping", "Stop when a monitored value stops improving.",
                       params=EarlyStoppingParams))
    register(Component("callback", "tensorboard", "TensorBoard event files: epoch scalars, optionally per step.",
                       params=TensorBoardParams))


@hookimpl
def make_callback(name, params):
    import importlib

    module, attr = _IMPLEMENTATIONS[name].split(":")
    return getattr(importlib.import_module(module), attr)(params)
