"""``ema``: an exponential moving average of the weights, through
``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``.

The average is updated after every real optimizer update (a skipped one is not
averaged), starting from the weights after the first update. With ``warmup`` the decay
of update ``t`` (1-based) is ``min(decay, (1 + t) / (10 + t))``, as in timm and
TensorFlow. With ``for_validation`` the validation pass uses the averaged weights (copied in at
``on_validation_start`` and the training weights back at ``on_validation_end``, in place,
so the optimizer keeps its tensors), and ``best.pt`` holds the averaged weights as its
``model`` (``last.pt`` the training weights); early stopping's ``restore_best`` then
loads the average. The average is checkpointed as the callback's ``state_dict`` and
restored on ``--resume``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from torchtk import hookimpl


class Ema:
    def __init__(self, params) -> None:
        self.decay, self.warmup, self.validate = params.decay, params.warmup, params.for_validation
        self.ema: AveragedModel | None = None
        self.pending: dict[str, Any] | None = None
        self.seen_step = 0
        self.backup: dict[str, Any] | None = None

    def decay_at(self, update: int) -> float:
        return min(self.decay, (1 + update) / (10 + update)) if self.warmup else self.decay

    @hookimpl
    def on_fit_start(self, state):
        self.model = state.model
        self.ema = AveragedModel(state.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        if self.pending is not None:
            self.ema.load_state_dict(self.pending)
            self.pending = None
        self.seen_step = state.step

    @hookimpl
    def on_step_end(self, state):
        if state.step == self.seen_step:  # the update was skipped
            return
        self.seen_step = state.step
        if self.warmup:
            averaged = int(self.ema.n_averaged)  # a host read, only with warmup
            self.ema.multi_avg_fn = get_ema_multi_avg_fn(self.decay_at(averaged))
        self.ema.update_parameters(self.model)

    @hookimpl
    def on_validation_start(self, state):
        if self.validate and self.ema is not None and int(self.ema.n_averaged):
            self.backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.ema.module.state_dict())

    @hookimpl
    def on_validation_end(self, state):
        if self.backup is not None:
            self.model.load_state_dict(self.backup)
            self.backup = None

    @hookimpl
    def on_save_checkpoint(self, state, checkpoint):
        """With ``for_validation``, the averaged weights are what was validated: ``best.pt``
        (and a checkpoint policy's files) hold them as ``model``; ``last.pt`` keeps the
        training weights, for ``--resume``."""
        if self.validate and self.ema is not None and int(self.ema.n_averaged):
            checkpoint["validated_model"] = {k: v.detach().clone() for k, v in self.ema.module.state_dict().items()}

    def state_dict(self) -> dict:
        if self.ema is None:
            return {"average": self.pending}
        return {"average": {k: v.detach().clone() for k, v in self.ema.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        if self.ema is None:
            self.pending = state["average"]
        elif state["average"] is not None:
            self.ema.load_state_dict(state["average"])
