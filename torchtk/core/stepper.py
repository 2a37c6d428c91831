"""The optimisation step: scaled backward, accumulation windows, and one optimizer update.

What happens at an update, in order (mmengine's ``OptimWrapper.update_params`` is the
model, kept smaller): unscale the gradients (fp16), ``on_step`` (gradients final and
unscaled; a callback may set ``state.skip_step``), agree on the skip across processes,
``scaler.step``/``optimizer.step`` unless skipped, detect an update the GradScaler
skipped (through the public ``get_scale()``: its scale shrinks exactly when it found
inf or NaN gradients), count the step, snapshot the lrs the epoch's last update used,
step the per-update schedulers after real updates only, ``zero_grad``, ``on_step_end``.

An optimizer whose catalog entry declares ``extras={"needs_closure": True}`` (L-BFGS)
gets ``optimizer.step(closure)``: the closure's first call returns the loss the loop
already computed, whose gradients ``on_step`` saw (and may have clipped); every later
call re-evaluates the loss of the same batch (``zero_grad``, forward and loss under the
precision's autocast, backward). Such a run has one batch per update and no GradScaler
(:func:`torchtk.core.assembly.check_closure`); other optimizers never build a closure.
"""

from __future__ import annotations

from typing import Any

from torchtk.core.distributed import Placement
from torchtk.core.state import TrainState


def current_lrs(optimizer: Any, per_group: bool = False, model: Any = None) -> dict[str, float]:
    """``{"lr": ...}`` for one param group, else (or with ``per_group``)
    ``{"lr/<group name>": ...}`` per group (a group without a name is named by what it
    holds in ``model``)."""
    from torchtk.core.param_groups import group_names

    groups = optimizer.param_groups
    if len(groups) == 1 and not per_group:
        return {"lr": float(groups[0]["lr"])}
    return {f"lr/{name}": float(group["lr"]) for name, group in zip(group_names(optimizer, model), groups)}


class Stepper:
    """Owns the optimizer step of a run; the loop calls :meth:`backward` per batch and
    :meth:`update` at each accumulation boundary."""

    def __init__(self, parts: Any, placement: Placement) -> None:
        self.model, self.optimizer, self.placement = parts.model, parts.optimizer, placement
        self.scaler = parts.precision.scaler
        self.accumulate = parts.info.accumulate
        self.batches = parts.info.batches_per_epoch
        # the last window may hold fewer batches: its losses are divided by its own size
        self.last_window = self.batches % self.accumulate or self.accumulate
        self.last_window_start = self.batches - self.last_window
        self.step_schedulers = [s.scheduler for s in parts.schedulers if s.interval == "step"]
        self.on_step, self.on_step_end = parts.hooks.on_step, parts.hooks.on_step_end
        self.per_group_lrs = parts.per_group_lrs
        self.needs_closure = parts.needs_closure
        if self.needs_closure:
            self.wrapped, self.loss_fn, self.autocast = parts.wrapped, parts.loss, parts.precision.autocast
        if self.accumulate != 1:  # DDP decides at the forward whether its backward all-reduces
            placement.sync_next(self.model, self.at_boundary(0))

    def backward(self, loss: Any, index: int) -> None:
        """Backward of batch ``index``'s loss, scaled for accumulation and fp16."""
        accumulate = self.accumulate
        if accumulate != 1:
            loss = loss / (accumulate if index < self.last_window_start else self.last_window)
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        if accumulate == 1:
            loss.backward()
            return
        if not self.at_boundary(index):
            with self.placement.no_sync(self.model):
                loss.backward()
        else:
            loss.backward()
        self.placement.sync_next(self.model, self.at_boundary((index + 1) % self.batches))

    def at_boundary(self, index: int) -> bool:
        """Whether batch ``index`` ends an accumulation window (an optimizer update)."""
        return not (index + 1) % self.accumulate or index + 1 == self.batches

    def closure(self, loss: Any, inputs: Any, target: Any) -> Any:
        """The closure an optimizer that re-evaluates the loss calls inside ``step``: first
        the loop's ``loss`` (its gradients are in place), then fresh evaluations on the batch."""
        pending = [loss]
        model, loss_fn, autocast, optimizer = self.wrapped, self.loss_fn, self.autocast, self.optimizer

        def closure() -> Any:
            if pending:
                return pending.pop()
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                value, _ = loss_fn(model(inputs), target)
            value.backward()
            return value

        return closure

    def update(self, state: TrainState, index: int, loss: Any, inputs: Any = None, target: Any = None) -> bool:
        """One optimizer update after batch ``index`` (whose loss is ``loss``; ``inputs``
        and ``target``, the batch, are read only by an optimizer that needs a closure);
        returns whether it really happened."""
        optimizer, scaler = self.optimizer, self.scaler
        state.batch_index, state.loss = index, loss
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.on_step is not None:
            state.skip_step = False
            self.on_step(state)
            stepped = not self.placement.agree(state.skip_step)
        else:
            stepped = True
        if scaler is not None:
            if stepped:
                scale = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                stepped = scaler.get_scale() >= scale  # the scale backs off exactly when the step was skipped
            else:
                scaler.update()  # also after a skipped step: it resets the unscale_ bookkeeping
        elif stepped:
            if self.needs_closure:
                optimizer.step(self.closure(loss, inputs, target))
            else:
                optimizer.step()
        if stepped:
            state.step += 1
            if self.step_schedulers:
                if index + 1 == self.batches:
                    state.last_update_lrs = current_lrs(optimizer, self.per_group_lrs, self.model)
                for scheduler in self.step_schedulers:
                    scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if self.on_step_end is not None:
            self.on_step_end(state)
        return stepped
