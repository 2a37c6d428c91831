"""``early_stopping``: stop when a monitored value stops improving; restore the best weights."""

from __future__ import annotations

import math

from torchtk import hookimpl


class EarlyStopping:
    def __init__(self, params) -> None:
        self.params = params
        self.monitor = params.monitor  # the engine checks it is logged before training starts
        self.best = math.inf if params.mode == "min" else -math.inf
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.params.mode == "min":
            return value < self.best - self.params.min_delta
        return value > self.best + self.params.min_delta

    @hookimpl
    def on_epoch_end(self, state):
        if self.params.monitor not in state.metrics:
            raise KeyError(f"early_stopping monitors {self.params.monitor!r}, which is not logged; "
                           f"logged: {', '.join(state.metrics)}")
        value = state.metrics[self.params.monitor]
        if self.improved(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.params.patience:
                state.should_stop = True
                delta = f" by more than {self.params.min_delta:g}" if self.params.min_delta else ""
                state.epoch_notes.append(f"early stopping: {self.params.monitor} has not improved{delta} for "
                                         f"{self.bad_epochs} epochs (best {self.best:.6g})")

    @hookimpl
    def on_fit_end(self, state):
        if not self.params.restore_best or state.checkpoints is None:
            return
        import torch

        path = state.checkpoints.directory / "best.pt"
        if not path.exists():
            state.log("early stopping: restore_best found no checkpoints/best.pt; the model keeps its last weights")
            return
        payload = torch.load(path, map_location=state.device, weights_only=True)
        state.model.load_state_dict(payload["model"])
        state.log(f"early stopping: restored the best weights, of epoch {payload['epoch']} (checkpoints/best.pt)")

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
