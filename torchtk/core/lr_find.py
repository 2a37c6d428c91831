"""``tk lr-find``: the learning-rate range test (Smith 2015; fastai's and Lightning's ``lr_find``).

The run is built by :func:`torchtk.core.assembly.build_parts`, the one build path a run
uses (model, weights, init, freeze policies and their param groups, optimizer, loss,
precision, and the checks before training), on the spec's device. Then, for ``steps``
optimizer updates, the lr grows exponentially from ``min_lr`` to ``max_lr``, one update
per ``trainer.accumulate_grad_batches`` training batches (cycling through the epoch as
often as needed). Each update's training loss is smoothed with an exponential moving
average (beta 0.98, bias-corrected, as fastai and Lightning do); the sweep stops when the
loss is not finite or the smoothed loss exceeds ``diverge`` (4) times its best so far.
The suggestion is the lr at the steepest descent of the smoothed loss against log(lr),
leaving out the first 10 updates and the last one (Lightning's rule).

Param groups keep their ratios to ``optimizer.params.lr`` (per-layer lrs of freeze
policies), so the suggestion is a value of ``optimizer.params.lr``. Schedulers and
callbacks are built (the same checks as ``tk train``) but never stepped or called.
Nothing is written but the plot: no run directory, the spec untouched, the model and
optimizer private to the sweep.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from torchtk.core.errors import UserInputError
from torchtk.core.outputs import atomic_write_bytes
from torchtk.core.registry import Registry, get_registry
from torchtk.core.spec import RunSpec, load_resolved, resolve

BETA = 0.98  # smoothing of the loss (fastai, Lightning)
SKIP_BEGIN, SKIP_END = 10, 1  # updates left out of the suggestion (Lightning's defaults)


@dataclass
class LrFind:
    """A finished sweep: the lr, raw and smoothed loss of every update it made."""

    name: str
    min_lr: float
    max_lr: float
    steps: int
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    stopped: str = ""  # why the sweep ended before ``steps`` updates ("" when it ran them all)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "min_lr": self.min_lr, "max_lr": self.max_lr, "steps": self.steps,
                "updates": len(self.lrs), "suggested_lr": self.suggestion, "stopped": self.stopped,
                "lr": self.lrs, "loss": self.losses, "smoothed_loss": self.smoothed}

    def write_png(self, path: str | Path) -> Path:
        """Smoothed (and raw) loss against the lr on a log axis, the suggestion marked."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        path = Path(path)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="loss per update")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
        if self.suggestion is not None:
            at = self.lrs.index(self.suggestion)
            ax.axvline(self.suggestion, color="tab:red", linestyle="--", linewidth=1)
            ax.plot([self.suggestion], [self.smoothed[at]], "o", color="tab:red",
                    label=f"suggested lr {self.suggestion:.3g} (steepest descent)")
        if self.smoothed:  # the descent fills the plot; the divergence beyond it is cut off
            best = min(self.smoothed)
            before = max(self.smoothed[:self.smoothed.index(best) + 1])
            low = min(best, min(self.losses))
            high = min(max(self.smoothed), before + (before - best))
            pad = 0.05 * (high - low or abs(high) or 1.0)
            ax.set_ylim(low - pad, high + pad)
        ax.set_xscale("log")
        ax.set_xlabel(f"learning rate (optimizer.params.lr; {len(self.lrs)} updates, exponential)")
        ax.set_ylabel("training loss")
        title = f"{self.name}: lr range test"
        ax.set_title(title + (f", suggested lr {self.suggestion:.3g}" if self.suggestion is not None else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())
        return path


def exponential_lrs(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """``steps`` learning rates from ``min_lr`` to ``max_lr``, evenly spaced on a log scale."""
    if steps == 1:
        return [min_lr]
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """The exponential moving average of ``losses``, bias-corrected (fastai's smoothing)."""
    average, smoothed = 0.0, []
    for index, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (index + 1)))
    return smoothed


def suggest(lrs: list[float], smoothed: list[float], skip_begin: int = SKIP_BEGIN,
            skip_end: int = SKIP_END) -> float | None:
    """The lr where ``smoothed`` falls fastest against log(lr): the most negative
    gradient (``torch.gradient``), leaving out the first ``skip_begin`` and last
    ``skip_end`` points, or none of them when too few remain; ``None`` under 3 points."""
    import torch

    if len(smoothed) - skip_begin - skip_end < 3:
        skip_begin = skip_end = 0
    if len(smoothed) < 3:
        return None
    stop = len(smoothed) - skip_end
    loss = torch.tensor(smoothed[skip_begin:stop], dtype=torch.float64)
    log_lr = torch.tensor(lrs[skip_begin:stop], dtype=torch.float64).log10()
    slope = torch.gradient(loss, spacing=(log_lr,))[0]
    return lrs[skip_begin + int(torch.argmin(slope))]


def check_range(min_lr: float, max_lr: float, steps: int, diverge: float) -> None:
    """The sweep's settings, each an input error naming its option."""
    if not min_lr > 0:
        raise UserInputError(f"--min-lr {min_lr:g}: give a learning rate > 0")
    if not max_lr > min_lr:
        raise UserInputError(f"--max-lr {max_lr:g}: give a learning rate above --min-lr {min_lr:g}")
    if steps < 2:
        raise UserInputError(f"--steps {steps}: give at least 2 updates")
    if not diverge > 1:
        raise UserInputError(f"--diverge {diverge:g}: give a factor > 1 (the smoothed loss over its best)")


def find_lr(spec: Any, overrides: list[str] | None = None, registry: Registry | None = None, *,
            min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100, diverge: float = 4.0) -> LrFind:
    """Run the lr range test on ``spec`` (``RunSpec``, file, bundled example name or dict)."""
    from torchtk.core.assembly import build_parts
    from torchtk.core.distributed import placement_for

    check_range(min_lr, max_lr, steps, diverge)
    registry = registry or get_registry()
    if isinstance(spec, RunSpec) and not overrides:
        resolved = resolve(spec.model_copy(deep=True), registry)
    else:
        resolved = load_resolved(spec, overrides=overrides, registry=registry)
    parts = build_parts(resolved, placement_for(resolved.spec.trainer.device, single="tk lr-find"))
    ratios = group_ratios(parts.optimizer, resolved)
    lrs = exponential_lrs(min_lr, max_lr, steps)
    losses, smoothed, stopped = sweep(parts, lrs, ratios, diverge)
    swept = lrs[:len(losses)]
    return LrFind(resolved.spec.name, min_lr, max_lr, steps, swept, losses, smoothed,
                  suggest(swept, smoothed), stopped)


def group_ratios(optimizer: Any, resolved: Any) -> list[float]:
    """Each param group's lr over ``optimizer.params.lr``: the sweep keeps these ratios."""
    entry = resolved.entry("optimizer")
    base = getattr(entry.params, "lr", None)
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        raise UserInputError(f"optimizer: {entry.ref.label!r} has no numeric lr param; tk lr-find sweeps "
                             "optimizer.params.lr")
    return [float(group["lr"]) / base if base else 1.0 for group in optimizer.param_groups]


def _batches(batches: Any) -> Iterator[Any]:
    """The training batches over and over (a sweep may be longer than an epoch)."""
    if batches is None or len(batches) == 0:
        raise UserInputError("data: the training split has no batch to sweep the lr on")
    while True:
        yield from batches


def sweep(parts: Any, lrs: list[float], ratios: list[float], diverge: float) -> tuple[list[float], list[float], str]:
    """One optimizer update per lr of ``lrs``; returns the losses, their smoothed values,
    and why the sweep stopped early ("" when it did not)."""
    from torchtk.core.data import to_device

    model, optimizer, scaler = parts.wrapped, parts.optimizer, parts.precision.scaler
    accumulate, batches = parts.info.accumulate, _batches(parts.train)
    model.train()
    for module in parts.frozen_eval:  # frozen norm statistics stay frozen, as in a run
        module.eval()
    losses: list[float] = []
    smoothed: list[float] = []
    best, average = math.inf, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # GradScaler/autocast chatter about the device
        for lr in lrs:
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            total = 0.0
            for _ in range(accumulate):
                inputs, target = (to_device(part, parts.device) for part in next(batches))
                with parts.precision.autocast():
                    loss, _ = parts.loss(model(inputs), target)
                scaled = loss / accumulate
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                total += float(loss.detach())
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = total / accumulate
            if not math.isfinite(value):
                return losses, smoothed, f"the loss became {value} at lr {lr:.3g}"
            losses.append(value)
            average = BETA * average + (1 - BETA) * value  # as smooth(losses), one update at a time
            smoothed.append(average / (1 - BETA ** len(losses)))
            if len(smoothed) > 1 and smoothed[-1] > diverge * best:
                return losses, smoothed, (f"the smoothed loss exceeded {diverge:g}x its best at lr {lr:.3g} "
                                          f"(update {len(losses)})")
            best = min(best, smoothed[-1])
    return losses, smoothed, ""


__all__ = ["LrFind", "exponential_lrs", "find_lr", "smooth", "suggest"]
