"""``checkpoint``: a checkpoint policy. Every ``every_n_epochs`` epochs it offers the
epoch to a top-k by a monitored value and writes it through the run's CheckpointService
(``state.checkpoints.save``) as ``epoch003-val_loss=0.1234.pt``; files that fall out of the
top k are deleted. ``metrics.json`` lists the kept files (``checkpoints``, best first).
``keep_last: false`` deletes ``last.pt`` when the run completes (an interrupted run keeps
it, to resume). The engine's ``best.pt`` is unchanged by this policy."""

from __future__ import annotations

import math

from torchtk import hookimpl


class CheckpointPolicy:
    def __init__(self, params) -> None:
        self.params = params
        self.monitor = params.monitor  # the engine checks it is logged before training starts
        self.kept: list[dict] = []  # {"file", "epoch", monitor: value}, best first

    def better(self, a: float, b: float) -> bool:
        return a < b if self.params.mode == "min" else a > b

    def publish(self, state) -> None:
        state.summary_extras["checkpoints"] = [dict(entry) for entry in self.kept]

    @hookimpl
    def on_fit_start(self, state):
        self.publish(state)

    @hookimpl
    def on_epoch_end(self, state):
        params, epoch = self.params, state.epoch
        if epoch % params.every_n_epochs:
            return
        value = state.metrics[params.monitor]
        if not math.isfinite(value):
            return
        k = params.save_top_k
        if k == 0:
            return
        if k > 0 and len(self.kept) >= k and not self.better(value, self.kept[-1][params.monitor]):
            return
        name = f"epoch{epoch:03d}-{params.monitor.replace('/', '_')}={value:.4f}.pt"
        state.checkpoints.save(name)
        entry = {"file": f"checkpoints/{name}", "epoch": epoch, params.monitor: value}
        position = next((i for i, e in enumerate(self.kept) if self.better(value, e[params.monitor])), len(self.kept))
        self.kept.insert(position, entry)
        while k > 0 and len(self.kept) > k:
            dropped = self.kept.pop()
            if state.is_main:
                (state.checkpoints.directory / dropped["file"].split("/", 1)[1]).unlink(missing_ok=True)
        self.publish(state)

    @hookimpl
    def on_fit_end(self, state):
        if not self.params.keep_last and state.is_main:
            (state.checkpoints.directory / "last.pt").unlink(missing_ok=True)

    def state_dict(self) -> dict:
        return {"kept": [dict(entry) for entry in self.kept]}

    def load_state_dict(self, state: dict) -> None:
        self.kept = [dict(entry) for entry in state["kept"]]
