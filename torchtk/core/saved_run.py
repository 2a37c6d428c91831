"""A run directory read back: its spec, history and best/last rows, and its model rebuilt
with a checkpoint's weights. What ``tk evaluate``, ``tk predict`` and ``tk export`` (and
``torchtk.load_run``) start from, so none of them rebuilds a model its own way.

The model is rebuilt through the one build path (:func:`torchtk.core.assembly.build_parts`)
with only the steps inference needs (``INFERENCE_STEPS``: no init, freeze, optimizer,
schedulers or callbacks), from the ``spec.json`` the run wrote. Where the model's params
have a ``weights`` field that names a file or weights name, it is pointed at the
checkpoint itself: the factory then builds the same head and stem as in training without
reading the original pretrained file (which may no longer be there), and the
checkpoint's tensors are loaded strictly on top. A checkpoint is read with
``torch.load(weights_only=True)``, and one written by a run of another spec is refused.

Reading a run (``load_run``) reads its files and validates the spec (which imports torch
only for components whose params are read from torch's signatures, such as ``init``);
building the model imports torch.
"""

from __future__ import annotations

import csv
import json
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torchtk.core.errors import UserInputError

CHECKPOINTS = ("best", "last")
INFERENCE_STEPS = ("seed", "data", "model", "precision", "loss", "metrics")
MODEL_STEPS = ("seed", "model", "precision")

__all__ = ["SavedRun", "load_run", "read_history", "rng_untouched", "data_fragment", "merged_data", "CHECKPOINTS",
           "INFERENCE_STEPS", "MODEL_STEPS"]


def read_history(path: Path) -> list[dict[str, float]]:
    """``history.csv`` as rows of floats (``epoch`` an int); an empty cell is no key, as
    in the rows a run logged (a column that joined later, an epoch that did not validate)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = []
        for record in csv.DictReader(handle):
            row: dict[str, float] = {}
            for key, text in record.items():
                if key is None or text in (None, ""):
                    continue
                try:
                    row[key] = int(text) if key == "epoch" else float(text)
                except ValueError:
                    raise UserInputError(f"{path}: column {key!r} holds {text[:40]!r}, not a number") from None
            rows.append(row)
        return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: not readable as JSON ({type(exc).__name__}: {exc})") from None


@dataclass
class SavedRun:
    """A run directory as its files describe it.

    ``spec`` is the validated ``RunSpec`` of ``spec.json``; ``history`` the rows of
    ``history.csv``; ``best`` and ``last`` the rows ``metrics.json`` names (empty when
    no epoch ended); ``classes`` the dataset's class names, when it had them.
    """

    path: Path
    spec: Any
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    monitor: str = "val_loss"
    mode: str = "min"
    classes: list[str] | None = None
    epochs_run: int = 0
    registry: Any = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def best_value(self) -> float | None:
        return self.best.get(self.monitor)

    def checkpoint_path(self, checkpoint: str | Path = "best") -> Path:
        """``"best"`` / ``"last"`` (``checkpoints/best.pt``, ``last.pt``) or a file path."""
        if str(checkpoint) in CHECKPOINTS:
            path = self.path / "checkpoints" / f"{checkpoint}.pt"
            if not path.exists():
                why = "no epoch improved the monitored value" if checkpoint == "best" else "none was kept"
                raise UserInputError(f"--checkpoint {checkpoint}: {path} does not exist ({why}); "
                                     f"choose {' or '.join(c for c in CHECKPOINTS if c != checkpoint)} or a file")
            return path
        path = Path(checkpoint)
        if not path.is_file():
            raise UserInputError(f"--checkpoint {checkpoint}: no such file; give best, last or a checkpoint file")
        return path

    def resolved(self, overrides: list[str] | None = None) -> Any:
        """The run's spec resolved against the registry, with ``--set`` style overrides."""
        from torchtk.core.spec import load_resolved

        return load_resolved(self.path / "spec.json", overrides=overrides, registry=self.registry)

    def read_checkpoint(self, checkpoint: str | Path = "best", device: Any = "cpu") -> dict[str, Any]:
        """The checkpoint's payload (``weights_only=True``), checked to come from this run's spec."""
        from torchtk.core.checkpoint import READABLE_VERSIONS
        from torchtk.core.spec import path_settings, spec_defaults, spec_differences, spec_fingerprint

        path = self.checkpoint_path(checkpoint)
        payload = _load_weights_only(path, device)
        if not isinstance(payload, dict) or payload.get("version") not in READABLE_VERSIONS \
                or not isinstance(payload.get("model"), dict):
            raise UserInputError(f"--checkpoint {checkpoint}: {path} is not a torchtk checkpoint (no format "
                                 f"version and model weights in it)")
        resolved = self.resolved()
        differences = spec_differences(payload.get("spec"), spec_fingerprint(resolved.spec),
                                       defaults=spec_defaults(resolved), paths=path_settings(resolved))
        if differences:
            shown = ", ".join(differences[:5]) + (f", ... ({len(differences)} in all)" if len(differences) > 5 else "")
            raise UserInputError(f"--checkpoint {checkpoint}: {path} was written by a run of another spec than "
                                 f"{self.path / 'spec.json'} (it differs at {shown})")
        return payload

    def parts(self, checkpoint: str | Path = "best", overrides: list[str] | None = None, device: str | None = None,
              steps: tuple[str, ...] = INFERENCE_STEPS, payload: dict[str, Any] | None = None) -> Any:
        """The run's parts for inference (``steps`` of the build path), the model in eval
        mode with the checkpoint's weights. ``overrides`` change the spec (another
        ``data``), ``device`` the run's ``trainer.device``; ``payload`` is the checkpoint
        as :meth:`read_checkpoint` returned it, when the caller read it already (it is
        not read twice). The global RNG states are left as they were (the build seeds
        them for the reproducible split)."""
        from torchtk.core.assembly import build_parts
        from torchtk.core.distributed import SingleProcess, resolve_device

        if payload is None:
            payload = self.read_checkpoint(checkpoint, device="cpu")
        resolved = self.resolved(_weights_override(self.resolved(), self.checkpoint_path(checkpoint))
                                 + list(overrides or ()))
        placement = SingleProcess(resolve_device(device or resolved.spec.trainer.device))  # also under torchrun
        with rng_untouched():
            parts = build_parts(resolved, placement, only=steps)
        if parts.classes is None:
            parts.classes = payload.get("classes") or self.classes
        _load_model(parts.model, payload["model"], self.checkpoint_path(checkpoint))
        parts.model.eval()
        parts.wrapped = parts.model
        return parts

    def model(self, checkpoint: str | Path = "best", device: str = "cpu") -> Any:
        """The run's ``nn.Module`` rebuilt with the checkpoint's weights, in eval mode (in
        the run's ``param_dtype`` for a ``*_true`` precision, else float32)."""
        return self.parts(checkpoint, device=device, steps=MODEL_STEPS).model


def load_run(run_dir: str | Path, registry: Any = None) -> SavedRun:
    """Read the run directory ``run_dir`` (what ``tk train`` wrote): its validated spec,
    history, best and last rows and class names."""
    path = Path(run_dir)
    spec_file = path / "spec.json"
    if not path.is_dir() or not spec_file.is_file():
        what = "does not exist" if not path.exists() else "is not a run directory (no spec.json in it)"
        raise UserInputError(f"{run_dir}: {what}; give a folder that tk train wrote, such as runs/<name>-<time>")
    from torchtk.core.spec import load_spec

    spec = load_spec(spec_file, registry=registry)
    summary = _read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    history = read_history(path / "history.csv")
    return SavedRun(path=path, spec=spec, history=history, best=summary.get("best") or {},
                    last=summary.get("last") or (history[-1] if history else {}),
                    monitor=summary.get("monitor", spec.trainer.monitor), mode=summary.get("mode", spec.trainer.mode),
                    classes=summary.get("classes"), epochs_run=summary.get("epochs_run", len(history)),
                    registry=registry)


# -- other data for a run (tk evaluate --data, tk predict --data) ----------------------------

def data_fragment(value: Any) -> dict[str, Any]:
    """``--data``: a dict, JSON text (an object) or the path of a JSON/YAML file holding one."""
    if isinstance(value, dict):
        return value
    text = str(value)
    if text.lstrip().startswith("{"):
        try:
            fragment = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--data: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                                 'give an object such as \'{"name": "image_folder", "params": {"root": "test"}}\' '
                                 "or a JSON/YAML file") from None
    elif Path(text).is_file():
        from torchtk.core.spec.loading import read_spec_file

        try:
            fragment, _ = read_spec_file(text)
        except UserInputError as exc:
            raise UserInputError(f"--data: {str(exc).replace('a spec must be', 'a data spec must be')}") from None
    else:
        raise UserInputError(f"--data {text}: neither a JSON object nor an existing JSON/YAML file")
    if not isinstance(fragment, dict):
        raise UserInputError(f"--data: a data spec is a JSON object such as {{\"name\": ..., \"params\": {{...}}}}, "
                             f"not {type(fragment).__name__}")
    return fragment


def merged_data(run_data: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """The run's ``data`` with the fragment's keys: ``name`` and ``params`` go together (a
    fragment with either replaces both; without ``name`` it is the run's dataset), every
    other key stays the run's unless the fragment gives it."""
    merged = {"name": run_data} if isinstance(run_data, str) else dict(run_data)
    if {"name", "params"} & fragment.keys():
        merged.pop("params", None)
    merged.update(fragment)
    return merged


# -- helpers --------------------------------------------------------------------------------


def _load_weights_only(path: Path, device: Any) -> Any:
    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # pickled code, truncated file, not a torch file
        raise UserInputError(f"{path}: not readable as a torchtk checkpoint with torch.load(weights_only=True) "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _weights_override(resolved: Any, checkpoint: Path) -> list[str]:
    """``["model.params.weights=<checkpoint>"]`` when the model loads weights by a
    ``weights`` param (the factory then builds the run's head from the checkpoint), else ``[]``."""
    params = resolved.entry("model").params
    if params is None or getattr(params, "weights", None) is None:
        return []
    return [f"model.params.weights={json.dumps(str(checkpoint.resolve()))}"]


def _load_model(model: Any, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserInputError(f"{path}: its weights do not fit the model this run's spec builds: "
                             f"{str(exc).splitlines()[0][:300]}") from None


@contextmanager
def rng_untouched() -> Iterator[None]:
    """Build (which seeds torch and ``random`` for the split) without changing the caller's RNGs."""
    import torch

    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(state)
