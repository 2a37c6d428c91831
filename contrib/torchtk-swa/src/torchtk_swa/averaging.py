"""``swa``: the averaged weights (``AveragedModel``), validated, BatchNorm-updated
(``update_bn``) and checkpointed.

Only parameters are averaged (``use_buffers=False``, SWA's rule): the BatchNorm running
statistics of averaged weights are recomputed over the training batches instead. The
training weights are never changed during the run: the average is copied in, in place,
for validation and the training weights copied back after it, and the data order and
dropout draws of ``update_bn``'s pass are undone (random states restored), so a run with
``swa`` trains exactly as the same run without it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from torchtk import TorchtkError, hookimpl
from torchtk.core.errors import UserInputError

from torchtk_swa import start_epoch

FINAL = "swa.pt"  # the final averaged model, written at the end of the run


class Swa:
    def __init__(self, params: Any) -> None:
        self.params = params
        self.average: AveragedModel | None = None
        self.pending: dict[str, Any] | None = None  # a checkpoint's average, loaded before on_fit_start
        self.start = 0
        self.averaged_epoch = 0  # the last epoch averaged (every: epoch)
        self.seen_step = 0
        self.backup: dict[str, Any] | None = None
        self.validated: tuple[int, dict[str, Any]] | None = None  # (epoch, weights) validated with the average
        self.frozen: list[Any] | None = None  # BatchNorm layers a freeze policy keeps in eval, seen while training

    # -- when ----------------------------------------------------------------------------------

    def first_epoch(self, state: Any) -> int:
        """The first averaged epoch: this callback's swa_start, else the swa_lr scheduler's
        (each param group records it), else 0.75 of the run; the two must agree."""
        declared = {group["swa_start"] for group in state.optimizer.param_groups if "swa_start" in group}
        own = start_epoch(self.params.swa_start, state.run.epochs) if self.params.swa_start is not None else None
        if own is not None and declared and declared != {own}:
            raise UserInputError(f"swa callback: swa_start {self.params.swa_start} is epoch {own}, but the swa_lr "
                                 f"scheduler starts at epoch {min(declared)}; give both the same swa_start (or "
                                 "leave the callback's null to follow the scheduler)")
        start = own if own is not None else min(declared) if declared else start_epoch(0.75, state.run.epochs)
        if start > state.run.epochs:
            raise UserInputError(f"swa callback: swa_start {self.params.swa_start} is epoch {start}, after the last "
                                 f"epoch ({state.run.epochs}); give an epoch from 1 to {state.run.epochs} or a "
                                 "fraction below 1")
        return start

    @hookimpl
    def on_fit_start(self, state):
        self.model, self.start, self.seen_step = state.model, self.first_epoch(state), state.step
        ema = get_ema_multi_avg_fn(self.params.ema_decay) if self.params.average == "ema" else None
        self.average = AveragedModel(state.model, multi_avg_fn=ema, use_buffers=False)
        if self.pending is not None:
            self.average.load_state_dict(self.pending)
            self.pending = None

    def averaged(self) -> int:
        return int(self.average.n_averaged) if self.average is not None else 0

    def average_epoch(self, state: Any) -> None:
        """Add this epoch's weights once (at validation, else at the epoch's end)."""
        if self.params.every == "epoch" and state.epoch >= self.start and self.averaged_epoch != state.epoch:
            self.average.update_parameters(self.model)
            self.averaged_epoch = state.epoch

    @hookimpl
    def on_step_end(self, state):
        if self.frozen is None:  # once: the modes as training sets them (validation puts all in eval)
            self.frozen = [m for m in batchnorms(self.model) if not m.training]
        if state.step == self.seen_step:  # the update was skipped (nan_guard)
            return
        self.seen_step = state.step
        if self.params.every == "step" and state.epoch >= self.start:
            self.average.update_parameters(self.model)

    # -- validation with the average -----------------------------------------------------------

    @hookimpl
    def on_validation_start(self, state):
        self.average_epoch(state)
        if not (self.params.validate_average and state.epoch >= self.start and self.averaged()):
            return
        self.backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.swap_in(state)

    @hookimpl
    def on_validation_end(self, state):
        if self.backup is None:
            return
        self.validated = (state.epoch, {k: v.detach().clone() for k, v in self.model.state_dict().items()})
        self.model.load_state_dict(self.backup)
        self.backup = None

    @hookimpl
    def on_epoch_end(self, state):
        self.average_epoch(state)

    def swap_in(self, state: Any) -> None:
        """The averaged parameters into the model, in place (the optimizer keeps its tensors),
        then the BatchNorm statistics for them."""
        with torch.no_grad():
            for own, averaged in zip(self.model.parameters(), self.average.module.parameters()):
                own.copy_(averaged)
        if self.params.update_bn:
            refresh_batchnorm(self.model, state, self.frozen or [])

    # -- checkpoints and the end ---------------------------------------------------------------

    @hookimpl
    def on_save_checkpoint(self, state, checkpoint):
        """best.pt (and a checkpoint policy's files) hold the weights that were validated:
        the average on averaged epochs with validate_average; last.pt the training weights."""
        if self.validated is not None and self.validated[0] == state.epoch:
            checkpoint["validated_model"] = self.validated[1]

    @hookimpl
    def on_fit_end(self, state):
        if not self.averaged():
            state.log(f"swa: nothing was averaged (the run ended before epoch {self.start}); the model keeps the "
                      "training weights")
            return
        self.validated = None
        self.swap_in(state)
        written = state.checkpoints.save(FINAL) if state.checkpoints is not None else []
        where = f", written to checkpoints/{FINAL}" if written else ""
        bn = " (BatchNorm statistics recomputed)" if self.params.update_bn and has_batchnorm(self.model) else ""
        unit = "epochs" if self.params.every == "epoch" else "updates"
        state.log(f"swa: the model holds the average of {self.averaged()} {unit} from epoch {self.start} on{bn}{where}")

    def state_dict(self) -> dict[str, Any]:
        average = self.pending if self.average is None else {
            k: v.detach().clone() for k, v in self.average.state_dict().items()}
        return {"average": average, "averaged_epoch": self.averaged_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state.get("averaged_epoch"), int):
            raise TorchtkError("not a swa callback state (no averaged_epoch)")
        self.averaged_epoch = state["averaged_epoch"]
        if self.average is None:
            self.pending = state["average"]
        elif state["average"] is not None:
            self.average.load_state_dict(state["average"])


def batchnorms(model: Any) -> list[Any]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model: Any) -> bool:
    return bool(batchnorms(model))


def refresh_batchnorm(model: Any, state: Any, frozen: list[Any]) -> None:
    """``update_bn`` over the run's training batches, leaving every random state as it was
    (the shuffle's generator, torch's global and device generators: dropout) and the
    BatchNorm layers a freeze policy put in eval mode as they were (their statistics stay
    the pretrained ones)."""
    batches = getattr(state, "train_batches", None) if has_batchnorm(model) else None
    if batches is None:
        return
    kept = {m: {k: v.clone() for k, v in m.state_dict().items()} for m in frozen}
    generator = getattr(batches, "generator", None)
    saved = generator.get_state() if generator is not None else None
    device = state.device
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    devices = [] if device.type == "cpu" else [device.index or 0]
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"), torch.no_grad():
        update_bn(([_to(inputs, device, dtype)] for inputs, _ in batches), model)
    if saved is not None:
        generator.set_state(saved)
    for module, buffers in kept.items():
        module.load_state_dict(buffers)
        module.eval()


def _to(inputs: Any, device: Any, dtype: Any) -> Any:
    """A batch's inputs on the device, floating-point ones in the model's dtype."""
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_to(x, device, dtype) for x in inputs)
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device=device, dtype=dtype if inputs.is_floating_point() else None)
    return inputs
