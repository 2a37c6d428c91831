"""``tk evaluate`` / ``torchtk.evaluate``: a run's checkpoint scored by the run's loss and
metrics (or others) on its validation split, or on other data, and written down.

Everything is rebuilt through the run's own build path (:meth:`SavedRun.parts
<torchtk.core.saved_run.SavedRun.parts>`, the probe included, so a metric that does not
fit the output fails before the pass) and scored by the loop's own validation pass
(:func:`torchtk.core.loop.evaluate`): the run's validation split is the one it trained
with (same seed, same batches), so ``best.pt`` gives back the best epoch's ``val_*``
values exactly on the CPU.

What is evaluated (the decisions README.md lists under "Decisions where the contract is
silent"):

- ``split``: ``val`` (the validation split as the run made it), ``train`` (the training
  split, unshuffled, with the *validation* transforms) or ``all`` (both, or a dataset
  that has no splits of its own whole). The default is ``val``; with ``data`` (another
  dataset), it is that dataset's own ``val`` part when it brings one (an ``image_folder``
  with ``train`` and ``val``), else all of it.
- ``data`` replaces keys of the run's ``data``: ``name`` and ``params`` together, every
  other key (transforms, batch size, workers) stays the run's unless given.
- The run's dev-run switches (``fast_dev_run``, ``limit_val_batches``,
  ``overfit_batches``) apply to the run's own validation split only, so its numbers are
  the ones the run logged; other data and other splits are evaluated whole (a
  ``--set trainer.limit_val_batches=...`` given here applies again).
- The eval file is ``eval-<timestamp>.json`` in the run directory, never overwriting an
  earlier one (``-2``, ``-3``, ... when two start in the same second); files a metric
  writes (``confusion_matrix.png``) are named ``eval-<timestamp>-<file>`` beside it, so
  the training run's own files stay as they were.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torchtk.core.errors import SpecError, UserInputError
from torchtk.core.saved_run import INFERENCE_STEPS, SavedRun, data_fragment, load_run, merged_data

SPLITS = ("val", "train", "all")
DEV_RUN_OFF = {"trainer.fast_dev_run": False, "trainer.overfit_batches": 0, "trainer.limit_train_batches": 1.0,
               "trainer.limit_val_batches": 1.0}  # the dev-run switches, each at the value that turns it off
DEV_RUN_RESETS = [f"{key}={json.dumps(value)}" for key, value in DEV_RUN_OFF.items()]
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
SPLIT_WORDS = {"val": "the validation split of", "train": "the training split of", "all": "all of"}
OWN_SPLIT_WORDS = {"val": "the run's validation split", "train": "the run's training split",
                   "all": "all the run's data"}

__all__ = ["EvalResult", "evaluate", "data_fragment", "metric_refs", "SPLITS"]


@dataclass
class EvalResult:
    """What one evaluation scored and where it wrote it.

    ``values`` are the loss (``loss``, ``loss/<term>``) and the metrics (``accuracy``,
    ``f1/<class>`` for a per-class metric), named as in ``history.csv`` without its
    ``val_`` prefix; ``path`` is the ``eval-<timestamp>.json`` written; ``samples`` how
    many samples were scored.
    """

    run_dir: Path
    values: dict[str, float]
    path: Path
    samples: int
    checkpoint: Path
    epoch: int | None
    split: str
    data: str  # what was evaluated, in words ("all of image_folder(root=test)")
    data_spec: dict[str, Any] = field(default_factory=dict)
    own_data: bool = True
    batches: int = 0
    classes: list[str] | None = None
    per_class: dict[str, list[str]] = field(default_factory=dict)  # metric -> its columns (class names)
    files: list[Path] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)  # the run's dev-run switches that cut the batches
    overrides: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    device: str = "cpu"
    precision: str = "fp32"
    time: str = ""

    @property
    def scalars(self) -> dict[str, float]:
        """The values that are not a per-class column."""
        columns = {f"{metric}/{column}" for metric, names in self.per_class.items() for column in names}
        return {key: value for key, value in self.values.items() if key not in columns}

    def to_json(self) -> dict[str, Any]:
        """What the eval file holds."""
        return {"run_dir": str(self.run_dir), "time": self.time,
                "checkpoint": {"path": str(self.checkpoint), "epoch": self.epoch},
                "data": {"description": self.data, "split": self.split, "own": self.own_data,
                         "samples": self.samples, "batches": self.batches, "limits": self.limits,
                         "spec": self.data_spec},
                "metrics": self.metrics, "overrides": self.overrides, "device": self.device,
                "precision": self.precision, "classes": self.classes, "values": self.values,
                "files": [path.name for path in self.files]}


def evaluate(run_dir: str | Path, checkpoint: str | Path = "best", data: Any = None,
             overrides: list[str] | None = None, metrics: list[Any] | None = None, device: str | None = None,
             split: str | None = None, registry: Any = None) -> EvalResult:
    """Score ``checkpoint`` (``"best"``, ``"last"`` or a file) of the run in ``run_dir``
    with the run's loss and metrics (or ``metrics``: names or ``{"name", "params"}``,
    replacing the spec's) on its validation split, or on ``data`` (a data-spec fragment:
    a dict, JSON text or a JSON/YAML file); write ``eval-<timestamp>.json`` (and the
    files metrics such as ``confusion_matrix`` write) into the run directory."""
    from torchtk.core.distributed import SingleProcess
    from torchtk.core.loop import evaluate as validation_pass

    run = load_run(run_dir, registry=registry)
    if split is not None and split not in SPLITS:
        raise UserInputError(f"--split {split}: choose {', '.join(SPLITS)}")
    if device is not None and not DEVICE.fullmatch(device):
        raise UserInputError(f"--device {device}: give auto, cpu, cuda, cuda:N or mps")
    changes = _changes(run, data, metrics)
    given = list(overrides or ())
    base = run.resolved(changes + given)
    own_data = base.spec.data == run.spec.data
    chosen = split or ("all" if data is not None else "val")
    extra = [] if own_data and chosen == "val" else list(DEV_RUN_RESETS)
    if chosen != "val":
        extra += _whole_splits(base.spec.data, chosen)
    payload = run.read_checkpoint(checkpoint, device="cpu")
    with _blamed(data is not None, metrics is not None, device is not None):
        parts = run.parts(checkpoint, changes + extra + given, device, steps=(*INFERENCE_STEPS, "probe"),
                          payload=payload)
    if not own_data:
        _check_classes(payload.get("classes") or run.classes, parts.classes, "--data" if data is not None else "data")
    pieces, chosen = _batches(parts, chosen, auto=split is None and data is not None)
    batches = pieces[0] if len(pieces) == 1 else itertools.chain(*pieces)
    row = validation_pass(parts, batches, SingleProcess(parts.device))
    values = {key[len("val_"):]: value for key, value in row.items()}
    result = EvalResult(
        run_dir=run.path, values=values, path=run.path, samples=sum(sample_count(p) for p in pieces),
        checkpoint=run.checkpoint_path(checkpoint).resolve(), epoch=payload.get("epoch"), split=chosen,
        data=describe_data(base, chosen, own_data), data_spec=base.spec.data.model_dump(mode="json"),
        own_data=own_data, batches=sum(len(p) for p in pieces), classes=parts.classes,
        per_class={key: list(m.columns) for key, m in parts.metrics.items() if getattr(m, "columns", None)},
        limits=_limits(parts.spec.trainer) if not extra else {}, overrides=given, metrics=list(parts.metrics),
        device=str(parts.device), precision=parts.precision_name, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_outputs(result, parts.metrics)
    return result


# -- what to build -------------------------------------------------------------------------




def metric_refs(values: list[Any]) -> list[Any]:
    """``--metric``: each a metric name, or a JSON object ``{"name": ..., "params": {...}}``."""
    refs = []
    for value in values:
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise UserInputError(f"--metric {value}: not valid JSON ({exc.msg} at column {exc.colno}); give a "
                                     'name or an object such as \'{"name": "f1", "params": {"average": "none"}}\'') \
                    from None
        refs.append(value)
    if not refs:
        raise UserInputError("--metric: give at least one metric (see tk list metrics)")
    return refs




def _changes(run: SavedRun, data: Any, metrics: list[Any] | None) -> list[str]:
    """The overrides ``data`` and ``metrics`` make, validated first so that a problem
    names ``--data`` or ``--metric`` and the path inside the spec."""
    raw = json.loads((run.path / "spec.json").read_text())
    replaced: dict[str, Any] = {}
    if data is not None:
        replaced["data"] = merged_data(raw.get("data") or {}, data_fragment(data))
    if metrics is not None:
        replaced["metrics"] = metric_refs(list(metrics))
    if not replaced:
        return []
    from torchtk.core.spec import load_resolved

    try:
        load_resolved({**raw, **replaced}, registry=run.registry)
    except SpecError as exc:
        options = {"data": "--data", "metrics": "--metric"}
        lines = [f"{options.get(re.split(r'[.[]', path)[0], 'spec.json')}: {path}: {message}"
                 for path, message in exc.problems]
        raise UserInputError("\n".join(lines)) from None
    return [f"{key}={json.dumps(value)}" for key, value in replaced.items()]


def _whole_splits(data: Any, split: str) -> list[str]:
    """Overrides that make the build's *training* batches the samples ``split`` wants,
    unshuffled and with the validation transforms (``all``: no validation split taken out)."""
    val_transforms = [ref.model_dump(mode="json") for ref in data.transforms.val]
    changes = ["data.shuffle=false", f"data.transforms.train={json.dumps(val_transforms)}"]
    return changes + (["data.val_split=0"] if split == "all" else [])


@contextmanager
def _blamed(data: bool, metrics: bool, device: bool) -> Iterator[None]:
    """Problems found while building, reworded to name the option that caused them."""
    try:
        yield
    except UserInputError as exc:
        message = str(exc)
        if data and message.startswith("data"):
            raise UserInputError(f"--data: {message}") from None
        if metrics and message.startswith("metrics["):
            raise UserInputError(f"--metric: {message}") from None
        if message.startswith("trainer.device="):
            if device:
                raise UserInputError(f"--device {message[len('trainer.device='):]}") from None
            raise UserInputError(f"{message} (the run's spec.json says so; --device chooses another)") from None
        raise


def _check_classes(run_classes: list[str] | None, classes: list[str] | None, option: str) -> None:
    """Another dataset's class names must be the run's, in its order: output ``i`` means the run's class ``i``."""
    if run_classes and classes and list(classes) != list(run_classes):
        raise UserInputError(f"{option}: the dataset's classes ({', '.join(classes)}) are not the run's "
                             f"({', '.join(run_classes)}); the model's output i means the run's class i, so give "
                             "data with the run's classes, in this order")


def _batches(parts: Any, split: str, auto: bool) -> tuple[list[Any], str]:
    """The batch iterables to score, and the split they are."""
    if split == "val" or (auto and parts.val is not None):  # a dataset with its own val part: that part
        if parts.val is None:
            raise UserInputError("--split val: this run has no validation split (data.val_split is 0 and the "
                                 "dataset brings no val part of its own); use --split train or all, or --data")
        return [parts.val], "val"
    if split == "train" or parts.val is None:
        return [parts.train], "all" if split == "all" else "train"
    return [parts.train, parts.val], "all"


def sample_count(batches: Any) -> int:
    """The samples one pass over ``batches`` yields (the last batch may be short; no batch is dropped)."""
    from torchtk.core.data import TensorBatches

    size = batches.size if isinstance(batches, TensorBatches) else len(batches.dataset)
    return min(size, len(batches) * batches.batch_size)


def _limits(trainer: Any) -> dict[str, Any]:
    """The dev-run switches of the run that cut its validation batches (and so this evaluation's)."""
    return {key: getattr(trainer, key.split(".")[1]) for key, off in DEV_RUN_OFF.items()
            if key != "trainer.limit_train_batches" and getattr(trainer, key.split(".")[1]) != off}


def describe_data(resolved: Any, split: str, own: bool) -> str:
    """What was evaluated, in words: ``the run's validation split``, or the split of the
    dataset with the params that are not its defaults: ``all of image_folder(root=test)``."""
    if own:
        return OWN_SPLIT_WORDS[split]
    entry = resolved.entry("data")
    params = entry.params.model_dump(exclude_defaults=True) if entry.params is not None else {}
    shown = ", ".join(f"{key}={value}" for key, value in params.items())
    return f"{SPLIT_WORDS[split]} {resolved.spec.data.name}({shown})"


# -- what to write -------------------------------------------------------------------------


def write_outputs(result: EvalResult, metrics: dict[str, Any]) -> None:
    """``eval-<timestamp>.json`` under a name no earlier evaluation has, and each metric's
    files (``write_best``) as ``eval-<timestamp>-<file>``; sets ``result.path`` and ``files``."""
    from torchtk.core.outputs import atomic_write_text

    path = reserve_name(result.run_dir)
    stem = path.name[: -len(".json")]
    title = f"{result.checkpoint.name} (epoch {result.epoch}) on {result.data}"
    for metric in metrics.values():
        if callable(getattr(metric, "write_best", None)):
            result.files += _metric_files(metric, result.run_dir, stem, result.epoch, title)
    result.path = path
    atomic_write_text(path, json.dumps(result.to_json(), indent=2) + "\n")


def reserve_name(run_dir: Path) -> Path:
    """A new ``eval-<timestamp>[-n].json`` in ``run_dir``, created empty so no other
    evaluation can take the name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for index in itertools.count(1):
        path = run_dir / f"eval-{stamp}{'' if index == 1 else f'-{index}'}.json"
        try:
            with path.open("x"):
                return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _metric_files(metric: Any, run_dir: Path, stem: str, epoch: int | None, title: str) -> list[Path]:
    """The files ``metric.write_best`` writes, written in a temporary folder of the run
    directory and moved beside the eval file as ``<stem>-<file>``. A ``write_best`` that
    takes ``title`` is told what was evaluated (the training run's says "best epoch")."""
    takes_title = "title" in inspect.signature(metric.write_best).parameters
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".eval-") as folder:
        if takes_title:
            metric.write_best(Path(folder), epoch, title=title)
        else:
            metric.write_best(Path(folder), epoch)
        moved = []
        for written in sorted(Path(folder).iterdir()):
            target = run_dir / f"{stem}-{written.name}"
            os.replace(written, target)
            moved.append(target)
    return moved
