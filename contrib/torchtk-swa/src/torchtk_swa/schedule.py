"""``swa_lr``: the schedule before ``swa_start``, then ``torch.optim.swa_utils.SWALR``."""

from __future__ import annotations

from typing import Any

from torchtk import TorchtkError

from torchtk_swa import start_epoch


def build_swa_lr(params: Any, optimizer: Any, run: Any) -> "SwaSchedule":
    if not isinstance(params.swa_start, int) and run is None:
        raise TorchtkError("swa_lr: a fractional swa_start needs the run's epochs; give an epoch number when "
                           "building it outside a run")
    start = start_epoch(params.swa_start, run.epochs) if run is not None else params.swa_start
    if run is not None and start > run.epochs:
        raise TorchtkError(f"swa_lr: swa_start {params.swa_start} is epoch {start}, after the last epoch "
                           f"({run.epochs}); give an epoch from 1 to {run.epochs} or a fraction below 1")
    before = params.before.build(optimizer, run) if params.before is not None else None
    return SwaSchedule(optimizer, params, start, before)


class SwaSchedule:
    """Steps ``before`` while the next epoch is before ``start``, then ``SWALR``.

    SWALR is built when the first averaged epoch is next (building it takes its first
    step, which sets ``swa_lr`` at once when ``anneal_epochs`` is 0), and stepped after
    each averaged epoch. Every param group records ``swa_start`` (the epoch), which the
    ``swa`` callback reads, as SWALR records ``swa_lr`` there.
    """

    def __init__(self, optimizer: Any, params: Any, start: int, before: Any = None) -> None:
        self.optimizer, self.params, self.start, self.before = optimizer, params, start, before
        self.epoch = 0  # epochs stepped past
        self.swalr = None
        for group in optimizer.param_groups:
            group["swa_start"] = start
        if start == 1:
            self._begin()
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _begin(self) -> None:
        from torch.optim.swa_utils import SWALR

        params = self.params
        self.swalr = SWALR(self.optimizer, swa_lr=params.swa_lr, anneal_epochs=params.anneal_epochs,
                           anneal_strategy=params.anneal_strategy)

    def step(self) -> None:
        self.epoch += 1
        if self.epoch + 1 < self.start:
            if self.before is not None:
                self.before.step()
        elif self.swalr is None:
            self._begin()
        else:
            self.swalr.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "start": self.start, "_last_lr": self._last_lr,
                "swalr": self.swalr.state_dict() if self.swalr is not None else None,
                "before": self.before.state_dict() if self.before is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Called after the optimizer's state (lrs included) is loaded: building SWALR here
        leaves those lrs as they are (its first step keeps the lr, or sets swa_lr, which a
        run past its annealing already holds), then its own state is loaded."""
        self.epoch, self._last_lr = state["epoch"], list(state["_last_lr"])
        if self.before is not None and state["before"] is not None:
            self.before.load_state_dict(state["before"])
        if state["swalr"] is not None:
            if self.swalr is None:
                lrs = [group["lr"] for group in self.optimizer.param_groups]
                self._begin()
                for group, lr in zip(self.optimizer.param_groups, lrs):
                    group["lr"] = lr
            self.swalr.load_state_dict(state["swalr"])
