"""The two passes over data: a training epoch and an evaluation pass.

Both move batches to the device (floating-point tensors cast to the precision's
``input_dtype`` when it has one), run the forward pass and the loss under the
precision's autocast, and sum the loss (and each term of a multi-term loss) weighted by
batch size in one :class:`LossMeter`, on the device: the host reads the sums once per
pass (and the live loss once per ``trainer.log_every_n_steps`` batches).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from torchtk.core.assembly import metric_values
from torchtk.core.data import TensorBatches, batch_size, to_device
from torchtk.core.distributed import Placement
from torchtk.core.speed import channels_last
from torchtk.core.state import TrainState
from torchtk.core.stepper import Stepper


def accumulator_dtype(device: Any, training: bool) -> Any:
    """float32 for training sums (one in-place add per batch), float64 for evaluation,
    except on MPS, which has no float64: float32 there."""
    import torch

    return torch.float32 if training or device.type == "mps" else torch.float64


class LossMeter:
    """Sample-weighted sums of the loss and its terms, kept on the device."""

    def __init__(self, names: list[str], device: Any, dtype: Any) -> None:
        import torch

        self.names = names
        self.total = torch.zeros((), device=device, dtype=dtype)
        self.terms = [torch.zeros((), device=device, dtype=dtype) for _ in names] if len(names) > 1 else []
        self.samples = 0

    def add(self, loss: Any, values: list[Any], size: int) -> None:
        self.samples += size
        self.total.add_(loss.detach(), alpha=size)
        for term_sum, value in zip(self.terms, values):
            term_sum.add_(value.detach(), alpha=size)

    def row(self, prefix: str, placement: Placement) -> dict[str, float]:
        """``{"<prefix>_loss": mean, "<prefix>_loss/<term>": mean, ...}`` over every process."""
        import torch

        sums, samples = torch.stack([self.total, *self.terms]), float(self.samples)
        if placement.world_size > 1:
            count = torch.tensor([samples], device=sums.device, dtype=sums.dtype)
            placement.all_reduce(sums)
            samples = placement.all_reduce(count).item()
        values = [value / samples if samples else math.nan for value in sums.tolist()]  # nan_guard skipped all
        row = {f"{prefix}_loss": values[0]}
        for name, value in zip(self.names, values[1:]):
            row[f"{prefix}_loss/{name}"] = value
        return row


def _autocast(precision: Any) -> Any:
    """The precision's autocast factory, or ``None`` for fp32 (no context manager at all)."""
    return None if precision.autocast is contextlib.nullcontext else precision.autocast


def train_epoch(parts: Any, state: TrainState, stepper: Stepper, placement: Placement, reporter: Any,
                log_every: int) -> dict[str, float]:
    """One pass over the training batches; returns the epoch's train loss row (and the
    ``train_<metric>`` columns of metrics asked for with ``"train": true``)."""
    model, loss_fn, device = parts.wrapped, parts.loss, parts.device
    train_metrics = list(parts.train_metrics.values())
    for metric in train_metrics:
        metric.reset()
    autocast = _autocast(parts.precision)
    meter = LossMeter(loss_fn.names, device, accumulator_dtype(device, training=True))
    move = not isinstance(parts.train, TensorBatches)  # TensorBatches live on the device (in input_dtype) already
    dtype = parts.precision.input_dtype  # None (fp32, autocast): no cast at all
    nhwc = move and parts.channels_last  # trainer.channels_last (TensorBatches were converted once)
    backward, at_boundary, update = stepper.backward, stepper.at_boundary, stepper.update
    model.train()
    for module in parts.frozen_eval:  # what freeze policies put in eval (frozen norm statistics) stays there
        module.eval()
    loss = None
    for index, (inputs, target) in enumerate(parts.train):
        if move:
            inputs, target = to_device(inputs, device, dtype), to_device(target, device, dtype)
            if nhwc:
                inputs = channels_last(inputs)
        if autocast is None:
            output = model(inputs)
            loss, values = loss_fn(output, target)
        else:
            with autocast():
                output = model(inputs)
                loss, values = loss_fn(output, target)
        backward(loss, index)
        if (index + 1) % log_every == 0:  # before the update, so its hooks (step_log) see this batch's loss
            state.logged_loss = loss.item()  # the one host sync per log interval, shared with loggers
            reporter.progress(index + 1, state.logged_loss)
        if at_boundary(index) and not update(state, index, loss, inputs, target) and state.skip_step:
            continue  # a callback skipped this update (nan_guard): its batch stays out of the epoch's mean
        meter.add(loss, values, batch_size(target))
        if train_metrics:
            detached = output.detach().float() if hasattr(output, "detach") else output
            for metric in train_metrics:
                metric.update(detached, target)
    if loss is not None:
        state.logged_loss = float(loss.detach())
        reporter.progress(parts.info.batches_per_epoch, state.logged_loss)
    row = meter.row("train", placement)
    if train_metrics:
        row.update(metric_values("train", parts.train_metrics))
    return row


def evaluate(parts: Any, batches: Any, placement: Placement) -> dict[str, float]:
    """The loss and every metric over ``batches`` (eval mode, no gradients)."""
    import torch

    model, loss_fn, device, metrics = parts.wrapped, parts.loss, parts.device, parts.metrics
    autocast = parts.precision.autocast
    for metric in metrics.values():
        metric.reset()
    meter = LossMeter(loss_fn.names, device, accumulator_dtype(device, training=False))
    move, dtype = not isinstance(batches, TensorBatches), parts.precision.input_dtype
    nhwc = move and parts.channels_last
    model.eval()
    with torch.no_grad():
        for inputs, target in batches:
            if move:
                inputs, target = to_device(inputs, device, dtype), to_device(target, device, dtype)
                if nhwc:
                    inputs = channels_last(inputs)
            with autocast():
                output = model(inputs)
                loss, values = loss_fn(output, target)
            meter.add(loss, values, batch_size(target))
            for metric in metrics.values():
                metric.update(output.float() if hasattr(output, "float") else output, target)
    row = meter.row("val", placement)
    row.update(metric_values("val", metrics))
    return row
