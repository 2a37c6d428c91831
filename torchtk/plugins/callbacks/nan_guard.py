"""``nan_guard``: skip or stop on a non-finite loss or gradient.

One host sync per optimizer update: the loss's and the gradients' finiteness are read
together (``tolist`` of two flags). The gradient check uses the max-abs norm, which is
inf or NaN exactly when some element is, and cannot overflow as a sum of squares can.
"""

from __future__ import annotations

import torch
from torch.nn.utils import get_total_norm

from torchtk import hookimpl
from torchtk.core.errors import RunFailed
from torchtk.plugins.callbacks._grads import params_with_grad


class NanGuard:
    def __init__(self, params) -> None:
        self.mode = params.mode
        self.skipped = 0

    @hookimpl
    def on_step(self, state):
        loss = state.loss.detach()
        grads = [p.grad for p in params_with_grad(state.optimizer)]
        if grads:
            flags = torch.stack([torch.isfinite(loss).all(), torch.isfinite(get_total_norm(grads, float("inf")))])
            loss_ok, grads_ok = flags.tolist()
        else:
            loss_ok, grads_ok = bool(torch.isfinite(loss).all()), True
        if loss_ok and grads_ok:
            return
        what = "loss and gradient" if not (loss_ok or grads_ok) else ("loss" if not loss_ok else "gradient")
        where = (f"epoch {state.epoch}, step {state.step + 1} (batch {state.batch_index + 1} of "
                 f"{state.run.batches_per_epoch})")
        if self.mode == "stop":
            last_good = state.checkpoints.last_good() if state.checkpoints is not None else ""
            raise RunFailed(f"nan_guard: non-finite {what} in {where}; the run stops. {last_good}".rstrip())
        state.skip_step = True
        self.skipped += 1
        state.epoch_values["skipped_steps"] = state.epoch_values.get("skipped_steps", 0) + 1
        state.log(f"nan_guard: non-finite {what} in {where}: update skipped ({self.skipped} so far)")

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = state["skipped"]
