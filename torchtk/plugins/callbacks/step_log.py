"""``step_log``: one row per logging interval into ``<run dir>/steps.csv``.

A row is written at every optimizer update whose batch ends a logging interval
(``(batch + 1) % trainer.log_every_n_steps == 0``; with gradient accumulation choose an
interval that is a multiple of ``accumulate_grad_batches``). The loss is
``state.logged_loss``, the value the loop already read for the progress bar: no extra
sync for it. The lr is the one the update used (read in ``on_step``, before the
scheduler steps). ``grad_norm`` is ``state.grad_norm`` when a callback computed it
(``grad_clip``): it is read on logging rows only, right after the loss read, so the
device has nothing left to wait for. ``skipped`` is 1 for an update a callback skipped.
On ``--resume`` the rows after the checkpoint's step are dropped, so the file reads as
if the run had never been interrupted.
"""

from __future__ import annotations

import csv
import io

from torchtk import hookimpl
from torchtk.core.stepper import current_lrs

BASE = ["epoch", "step", "batch", "loss", "grad_norm", "skipped"]


class StepLog:
    def __init__(self, params) -> None:
        self.params = params
        self.path = None
        self.columns: list[str] = []
        self.pending: dict | None = None

    @hookimpl
    def on_fit_start(self, state):
        if not state.is_main or state.run_dir is None:
            return
        self.path = state.run_dir / "steps.csv"
        rows = []
        if self.path.exists():  # a resumed run: keep what the checkpoint's updates logged
            with open(self.path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= state.step]
        self.rewrite(rows, list(rows[0]) if rows else [])

    def rewrite(self, rows: list[dict], columns: list[str]) -> None:
        self.columns = columns
        buffer = io.StringIO()
        if columns:
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        self.path.write_text(buffer.getvalue())

    def logging(self, state) -> bool:
        return self.path is not None and (state.batch_index + 1) % state.log_every_n_steps == 0

    @hookimpl
    def on_step(self, state):
        if self.logging(state):
            self.pending = current_lrs(state.optimizer, model=state.model)  # history.csv's group names

    @hookimpl
    def on_step_end(self, state):
        if self.pending is None:
            return
        lrs, self.pending = self.pending, None
        skipped = bool(state.skip_step)
        norm = state.grad_norm
        row = {"epoch": state.epoch, "step": state.step, "batch": state.batch_index + 1,
               "loss": repr(state.logged_loss) if state.logged_loss is not None else "",
               "grad_norm": repr(float(norm)) if norm is not None else "", "skipped": int(skipped),
               **{k: repr(v) for k, v in lrs.items()}}
        new = [key for key in row if key not in self.columns]
        if new:  # the first row, or a param group joined: rewrite with the wider header
            with open(self.path, newline="") as handle:
                old = list(csv.DictReader(handle)) if self.columns else []
            self.rewrite(old, self.columns + new)
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n", restval="").writerow(row)
