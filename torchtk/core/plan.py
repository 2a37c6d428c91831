"""Look before you train: the lr and weight decay of every param group at every update.

``compute_plan`` builds what decides the learning rate -- the model, the fine-tuning
policies (per-layer param groups), the optimizer and the schedulers -- with the same
build path a run uses (:func:`torchtk.core.assembly.build_parts`), then steps the schedulers through the whole run without computing a single
gradient. Warmup, per-group multipliers, gradient accumulation and the epoch-to-update
conversion are all included, because the engine's own scheduler construction is used.
Nothing is trained, no run directory is created, and the objects are private to the
plan, so a real run's optimizer is never touched.

Freeze policies that act during the run (``unfreeze_at``: a param group joins the
optimizer at an epoch) get their ``on_fit_start`` and ``on_epoch_start`` calls here as in
a run (they are bound to the plan's optimizer and schedulers by ``build_parts``), so the plan shows the group from its epoch on; before it, its lr and weight
decay read 0 (its parameters are frozen) and ``Plan.joins`` says when it appeared.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchtk.core.outputs import atomic_write_bytes
from torchtk.core.registry import Registry, get_registry
from torchtk.core.spec import RunSpec, load_resolved, resolve
from torchtk.core.state import RunInfo

SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class Update:
    """The lr and weight decay in effect for one optimizer update (1-based), per group."""

    update: int
    epoch: int
    lr: list[float]
    weight_decay: list[float]


@dataclass
class Plan:
    """Every update of a run, and what a reader needs to interpret it."""

    name: str
    run: RunInfo
    groups: list[str]
    updates: list[Update]
    schedulers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    joins: dict[str, int] = field(default_factory=dict)  # group name -> the epoch it joined the optimizer

    def lrs(self, group: int) -> list[float]:
        return [u.lr[group] for u in self.updates]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "epochs": self.run.epochs, "steps_per_epoch": self.run.steps_per_epoch,
            "batches_per_epoch": self.run.batches_per_epoch, "accumulate": self.run.accumulate,
            "total_updates": len(self.updates), "groups": self.groups, "schedulers": self.schedulers,
            "notes": self.notes, "group_epochs": self.joins,
            "updates": [{"update": u.update, "epoch": u.epoch, "lr": u.lr, "weight_decay": u.weight_decay}
                        for u in self.updates],
        }

    def sample(self, rows: int = 12) -> list[Update]:
        """A few updates worth printing: the first update of each epoch (of evenly spaced
        epochs when there are many), and the last update."""
        if not self.updates:
            return []
        picks = {(epoch - 1) * self.run.steps_per_epoch for epoch in self._sampled_epochs(rows)}
        return [self.updates[i] for i in sorted(picks | {len(self.updates) - 1})]

    def _sampled_epochs(self, rows: int) -> list[int]:
        epochs = self.run.epochs
        if epochs <= rows:
            return list(range(1, epochs + 1))
        return sorted({1 + round(i * (epochs - 1) / (rows - 1)) for i in range(rows)})

    def sample_sentence(self, rows: int = 12) -> str:
        """Which updates :meth:`sample` shows, in words (printed above the table)."""
        total, per_epoch, epochs = len(self.updates), self.run.steps_per_epoch, self.run.epochs
        sampled = len(self._sampled_epochs(rows))
        if not total:
            return "rows: none (no updates)"
        if sampled == epochs and per_epoch == 1:
            return f"rows: every update ({total})"
        if sampled == epochs:
            return f"rows: every {_ordinal(per_epoch)} of {total} updates (each epoch's first) and the last"
        return f"rows: the first update of {sampled} of the {epochs} epochs, and the last ({total})"

    def sparkline(self, group: int, width: int = 40) -> str:
        """The group's lr over the run as one line of block characters (max of each bucket)."""
        values = self.lrs(group)
        if not values:
            return ""
        buckets = [max(values[i * len(values) // width:max((i + 1) * len(values) // width, i * len(values) // width + 1)])
                   for i in range(min(width, len(values)))]
        low, high = min(values), max(values)
        if high - low <= 1e-12 * max(abs(high), 1e-300):
            return SPARK[-1] * len(buckets)
        return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / (high - low) * len(SPARK)))] for v in buckets)

    def figure(self, log_scale: bool | None = None) -> Any:
        """The figure of ``lr.png``: lr against update for every group, epoch boundaries
        marked; the lr axis is logarithmic with ``log_scale``, linear with ``False``, and
        with ``None`` logarithmic when the lr spans more than a decade."""
        from matplotlib.figure import Figure

        from torchtk.core.curves import wants_log_scale

        fig = Figure(figsize=(8, 4))
        ax = fig.subplots()
        steps = [u.update for u in self.updates]
        for index, label in enumerate(self.groups):
            decay = {u.weight_decay[index] for u in self.updates}
            suffix = f" (weight decay {decay.pop():g})" if len(decay) == 1 else ""
            ax.plot(steps, self.lrs(index), label=label + suffix, linewidth=1.5)
        if self.run.epochs <= 60:
            for epoch in range(1, self.run.epochs):
                ax.axvline(epoch * self.run.steps_per_epoch + 0.5, color="0.85", linewidth=0.8, zorder=0)
        if log_scale or (log_scale is None and wants_log_scale([lr for u in self.updates for lr in u.lr])):
            ax.set_yscale("log")
        ax.set_xlabel(f"optimizer update ({self.run.steps_per_epoch} per epoch, {self.run.epochs} epochs)")
        ax.set_ylabel("learning rate" + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.set_title(f"{self.name}: " + " + ".join(s["label"] for s in self.schedulers) if self.schedulers
                     else f"{self.name}: constant lr")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def write_png(self, path: str | Path, log_scale: bool | None = None) -> Path:
        """Write :meth:`figure` into ``path`` (a PNG), atomically."""
        path = Path(path)
        buffer = io.BytesIO()
        self.figure(log_scale).savefig(buffer, format="png", dpi=100)
        atomic_write_bytes(path, buffer.getvalue())
        return path


def compute_plan(spec: Any, overrides: list[str] | None = None, registry: Registry | None = None) -> Plan:
    """The lr and weight decay of every param group at every optimizer update of ``spec``.

    The parts are built by the same :func:`~torchtk.core.assembly.build_parts` a run
    uses, up to the schedulers, on the CPU. ``reduce_on_plateau`` depends on metrics
    nobody knows before training; the plan assumes the monitored value improves every
    epoch (so it never reduces), and says so in ``notes``.
    """
    import torch

    from torchtk.core.assembly import build_parts
    from torchtk.core.distributed import SingleProcess

    registry = registry or get_registry()
    if isinstance(spec, RunSpec) and not overrides:
        resolved = resolve(spec.model_copy(deep=True), registry)
    else:
        resolved = load_resolved(spec, overrides=overrides, registry=registry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": nothing is trained here
        parts = build_parts(resolved, SingleProcess(torch.device("cpu")), upto="schedulers")
        said: list[str] = []
        updates, joins = _step_through(parts, said)
    notes = [line for line in said if line]
    notes += [f"{name}: joins the optimizer at epoch {epoch}; its lr reads 0 before (frozen)"
              for name, epoch in joins.items() if epoch > 1]
    if any(s.needs_metric for s in parts.schedulers):
        notes.append("reduce_on_plateau: assumes the monitored value improves every epoch, so the lr is "
                     "never reduced; in a run it drops by its factor after patience epochs without improvement")
    described = [{"name": ref.label, "label": _label(ref.label, ref.params), "interval": s.interval,
                  "needs_metric": s.needs_metric} for ref, s in zip(resolved.spec.scheduler, parts.schedulers)]
    return Plan(resolved.spec.name, parts.info, parts.group_names, updates, described, notes, joins)


def _step_through(parts: Any, log: list[str]) -> tuple[list[Update], dict[str, int]]:
    """Every update's lr and weight decay, stepping the schedulers as a run does, with
    the epoch-start hooks of the policies that add param groups during the run.

    Returns the updates (every one with a value per final group: 0 before a group
    joined) and the epoch each group joined."""
    from torchtk.core.param_groups import group_names
    from torchtk.core.run_hooks import RunHooks
    from torchtk.core.state import TrainState

    info, param_groups, updates = parts.info, parts.optimizer.param_groups, []
    hooks = RunHooks(list(parts.callbacks.values()))  # only the policies with run hooks exist at this step
    state = TrainState(model=parts.model, optimizer=parts.optimizer, run=info, device=parts.device, log=log.append)
    joins = dict.fromkeys(group_names(parts.optimizer, parts.model), 1)
    if hooks.on_fit_start:
        hooks.on_fit_start(state)
    for epoch in range(1, info.epochs + 1):
        state.epoch = epoch
        if hooks.on_epoch_start:
            hooks.on_epoch_start(state)
            for name in group_names(parts.optimizer, parts.model):
                joins.setdefault(name, epoch)
        for _ in range(info.steps_per_epoch):
            updates.append(Update(len(updates) + 1, epoch, [float(g["lr"]) for g in param_groups],
                                  [float(g.get("weight_decay", 0.0)) for g in param_groups]))
            for scheduled in parts.schedulers:
                if scheduled.interval == "step":
                    scheduled.step()
        for scheduled in parts.schedulers:  # as a run: one that needs a metric steps on validated epochs only
            validated = info.validates(epoch) or not scheduled.monitor.startswith("val_")
            if scheduled.interval == "epoch" and (not scheduled.needs_metric or validated):
                scheduled.step({scheduled.monitor: _improving(scheduled.scheduler, epoch)})
    width = len(param_groups)
    for update in updates:  # groups that joined later: 0 before (frozen parameters do not train)
        update.lr += [0.0] * (width - len(update.lr))
        update.weight_decay += [0.0] * (width - len(update.weight_decay))
    return updates, joins


def _ordinal(n: int) -> str:
    """``2nd``, ``3rd``, ``11th``, ``49th``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _label(name: str, params: dict[str, Any]) -> str:
    """``warmup -> cosine_annealing``: a composite scheduler named with what it contains."""
    inner = [params["then"]] if isinstance(params.get("then"), dict) else params.get("schedulers") or []
    if not isinstance(inner, list) or not inner:
        return name
    names = [_label(ref["name"], ref.get("params") or {}) for ref in inner if isinstance(ref, dict)]
    return f"{name} -> {', '.join(names)}" if name == "warmup" else f"{name}({', '.join(names)})"


def _improving(scheduler: Any, epoch: int) -> float:
    """A monitored value that improves every epoch, in the direction the scheduler wants."""
    while getattr(scheduler, "mode", None) not in ("min", "max") and getattr(scheduler, "after", None) is not None:
        scheduler = scheduler.after
    return float(epoch) if getattr(scheduler, "mode", "min") == "max" else 1.0 / epoch
