"""``run_tiny``: a real two-epoch run, small enough for a unit test, with your components in it."""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

# The tiny rings problem: 2 features, 1 logit, 120 points (90 train, 30 val), batches of 15, CPU.
TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [8], "out_features": 1}},
    "data": {"name": "rings", "params": {"n_positive": 40, "n_negative": 80}, "batch_size": 15, "val_split": 0.25},
    "loss": "bce_with_logits",
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "trainer": {"epochs": 2, "device": "cpu"},
}


@dataclass
class TinyRun:
    """What :func:`run_tiny` returns: the run directory and what the run wrote there."""

    run_dir: Path
    history: list[dict[str, float]]  # one row per epoch, as history.csv holds them
    metrics: dict[str, Any]  # metrics.json
    result: Any  # the torchtk.core.engine.RunResult (model, best, last, checkpoints)
    spec: dict[str, Any]  # the spec that was trained (before validation)

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: dicts key by key, any other value replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_spec(callback: Any = None, loss: Any = None, scheduler: Any = None, metric: Any = None, *,
              epochs: int = 2, spec: Mapping[str, Any] | None = None, output_dir: str | Path | None = None
              ) -> dict[str, Any]:
    """The spec :func:`run_tiny` trains, as a dict."""
    found = copy.deepcopy(TINY_SPEC)
    found["trainer"]["epochs"] = epochs
    if loss is not None:
        found["loss"] = copy.deepcopy(loss)
    if scheduler is not None:
        found["scheduler"] = copy.deepcopy(scheduler)
    if callback is not None:
        found["callbacks"] = _listed(copy.deepcopy(callback))
    if metric is not None:
        found["metrics"] = _listed(copy.deepcopy(metric))
    if spec:
        found = merged(found, spec)
    found["trainer"].setdefault("output_dir", str(output_dir or tempfile.mkdtemp(prefix="torchtk-tiny-")))
    return found


def run_tiny(callback: Any = None, loss: Any = None, scheduler: Any = None, metric: Any = None, *,
             registry: Any = None, epochs: int = 2, spec: Mapping[str, Any] | None = None,
             output_dir: str | Path | None = None) -> TinyRun:
    """Train the tiny rings problem for ``epochs`` epochs with your components.

    Each of ``callback``, ``loss``, ``scheduler`` and ``metric`` is written as in a spec:
    a name, ``{"name": ..., "params": {...}}``, or (callbacks, metrics, loss terms) a
    list of them. ``spec`` is merged over the tiny spec last (``{"trainer": {"epochs":
    3}}``, another model or dataset). ``registry``: the one the run resolves names in
    (default: the process-wide one). The run writes under ``output_dir`` (default: a
    fresh temporary folder). A failing run raises, as ``torchtk.train`` does.
    """
    import torchtk

    trained = tiny_spec(callback, loss, scheduler, metric, epochs=epochs, spec=spec, output_dir=output_dir)
    result = torchtk.train(copy.deepcopy(trained), registry=registry, progress=False)
    run_dir = Path(result.run_dir)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return TinyRun(run_dir=run_dir, history=list(result.history), metrics=metrics, result=result, spec=trained)
