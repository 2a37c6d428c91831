"""``tk predict``: a run's model applied to new inputs, one row per input.

Inputs are image files and folders (every image under a folder, recursively, in sorted
order; class folders are not needed), or the samples of a dataset (``data``: a JSON
fragment merged over the run's ``data``, as ``tk evaluate --data`` takes it). An image
is read the way the run's dataset reads its own samples (its catalog entry declares a
``file_reader``: the same PIL mode, the same float tensor), goes through the run's
*validation* transforms, never the training augmentations, and is batched, placed,
cast and autocast as the run's validation batches are.

How an output is read is declared by the run's loss (:data:`OUTPUT_KINDS`): the first
loss term that says so decides, in this order: ``from_logits: false`` in its params
(the output already holds probabilities), its catalog entry's ``extras["prediction"]``
(``cross_entropy``: softmax, ``bce_with_logits``: sigmoid, ``mse``: value), a ``mode``
param (binary and multilabel: sigmoid; multiclass: softmax). When no term says, the
output's shape does: one column is a sigmoid, more are a softmax.

Outputs of shape ``(N, C)`` (or ``(N,)``) give the predicted class, its probability and
the top k; an output of shape ``(N, C, H, W)`` is a per-pixel prediction, written as a
mask PNG per input (:class:`MaskWriter`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from torchtk.core.errors import UserInputError

# kind -> (activation, task); task: "multiclass" (one class per input), "independent"
# (a probability per column: binary with one column, multilabel with several), "value"
OUTPUT_KINDS: dict[str, tuple[str, str]] = {
    "softmax": ("softmax", "multiclass"),  # class logits (cross_entropy)
    "log_softmax": ("exp", "multiclass"),  # log-probabilities (nll, kl_div)
    "class_probabilities": ("none", "multiclass"),  # probabilities over classes (mode multiclass, from_logits false)
    "sigmoid": ("sigmoid", "independent"),  # a logit per class (bce_with_logits, focal binary)
    "probabilities": ("none", "independent"),  # a probability per class (bce)
    "value": ("none", "value"),  # regression: the output itself (mse)
}
THRESHOLD = 0.5  # a probability from which an independent class counts as predicted (as the metrics do)

__all__ = ["OUTPUT_KINDS", "Prediction", "predict", "declared_kind", "input_files", "voc_palette"]


@dataclass
class Prediction:
    """What ``predict`` did: the rows, where they went, and how the outputs were read."""

    run: str
    checkpoint: Path
    device: str
    kind: str  # an OUTPUT_KINDS key
    kind_from: str  # what decided the kind: a loss term, --output-kind, or the output's shape
    rows: list[dict[str, Any]] = field(default_factory=list)
    csv: Path | None = None
    masks: Path | None = None

    @property
    def columns(self) -> list[str]:
        from torchtk.core.outputs import merged_columns

        return merged_columns(self.rows)

    def summary(self) -> str:
        where = f"; wrote {self.csv}" if self.csv is not None else ""
        masks = f" and masks in {self.masks}" if self.masks is not None and self.masks.is_dir() else ""
        return (f"{self.run}: {len(self.rows)} inputs predicted with {self.checkpoint.name} on {self.device}, "
                f"outputs read as {self.kind} ({self.kind_from}){where}{masks}")

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "checkpoint": str(self.checkpoint), "device": self.device, "output_kind": self.kind,
                "output_kind_from": self.kind_from, "csv": None if self.csv is None else str(self.csv),
                "masks": None if self.masks is None else str(self.masks), "rows": self.rows}


def predict(run_dir: str | Path, inputs: Sequence[str | Path] = (), data: str | dict[str, Any] | None = None,
            checkpoint: str | Path = "best", out: str | Path | None = None, out_dir: str | Path | None = None,
            top_k: int = 1, batch_size: int | None = None, num_workers: int | None = None,
            device: str | None = None, output_kind: str = "auto", registry: Any = None) -> Prediction:
    """Predict every input (image files, folders of images) or every sample of ``data``
    with the run in ``run_dir``; write the rows to ``out`` (a CSV) when given, and the
    masks of a segmentation run into ``out_dir`` (default: ``<out stem>-masks`` next to
    ``out``; with neither, a row's ``mask`` is the tensor itself)."""
    from torchtk.core.assembly import split_transforms
    from torchtk.core.saved_run import MODEL_STEPS, load_run

    _check_options(inputs, data, top_k, output_kind, batch_size, num_workers)
    run = load_run(run_dir, registry=registry)
    overrides = data_overrides(run, data) if data is not None else []
    resolved = resolved_with(run, overrides)
    files = None if data is not None else input_files(inputs, file_reader(resolved).extensions)
    parts = run.parts(checkpoint, overrides=overrides, device=device, steps=MODEL_STEPS)
    chain = split_transforms(parts.resolved, "val")
    source = dataset_source(parts.resolved, chain) if files is None else \
        file_source(files, file_reader(parts.resolved), chain)
    kind, kind_from = (output_kind, "--output-kind") if output_kind != "auto" else declared_kind(parts.resolved)
    masks = MaskWriter(mask_folder(out, out_dir))
    reader = OutputReader(kind, kind_from, parts.classes, top_k, masks)
    spec_data = parts.spec.data
    loader = _loader(source, batch_size or spec_data.batch_size,
                     spec_data.num_workers if num_workers is None else num_workers, parts.device)
    rows: list[dict[str, Any]] = []
    for output, second in forward_batches(parts, loader):
        done = len(rows)
        span = slice(done, done + len(output))
        rows += reader.rows(output, source.labels[span], source.stems[span], second if source.has_targets else None)
    result = Prediction(run.name, run.checkpoint_path(checkpoint), str(parts.device), str(reader.kind),
                        reader.kind_from, rows, masks=masks.folder)
    if out is not None:
        result.csv = write_csv(out, rows, result.columns)
    return result


def _check_options(inputs: Sequence[Any], data: Any, top_k: int, output_kind: str, batch_size: int | None,
                   num_workers: int | None) -> None:
    if inputs and data is not None:
        raise UserInputError("give image files and folders, or --data, not both")
    if not inputs and data is None:
        raise UserInputError("nothing to predict: give image files or folders (tk predict RUN_DIR images/), or "
                             "--data with a dataset")
    if top_k < 1:
        raise UserInputError(f"--top-k {top_k}: give 1 or more")
    if output_kind != "auto" and output_kind not in OUTPUT_KINDS:
        raise UserInputError(f"--output-kind {output_kind!r}: choose auto, {', '.join(OUTPUT_KINDS)}")
    if batch_size is not None and batch_size < 1:
        raise UserInputError(f"--batch-size {batch_size}: give 1 or more")
    if num_workers is not None and num_workers < 0:
        raise UserInputError(f"--num-workers {num_workers}: give 0 or more")


# -- how the outputs are read -----------------------------------------------------------------


def declared_kind(resolved: Any) -> tuple[str | None, str]:
    """``(kind, what decided it)`` from the run's loss terms (see the module docstring);
    ``(None, ...)`` when no term says, and the output's shape decides."""
    for entry in resolved.slot("loss"):
        params, name = entry.params, entry.ref.label
        mode = getattr(params, "mode", None)
        if getattr(params, "from_logits", None) is False:
            kind = "class_probabilities" if mode == "multiclass" else "probabilities"
            return kind, f"{entry.path} {name} with from_logits: false"
        declared = entry.component.extras.get("prediction") if entry.component is not None else None
        if declared in OUTPUT_KINDS:
            return declared, f"{entry.path} {name}"
        if mode in ("binary", "multilabel", "multiclass"):
            return ("softmax" if mode == "multiclass" else "sigmoid"), f"{entry.path} {name} with mode: {mode}"
    return None, "the output's shape, as no loss term declares how to read it"


def activate(output: Any, activation: str) -> Any:
    """Probabilities (or values) from a float output, the class dimension being dim 1."""
    if activation == "softmax":
        return output.softmax(dim=1)
    if activation == "sigmoid":
        return output.sigmoid()
    if activation == "exp":
        return output.exp()
    return output


class OutputReader:
    """Turns batches of outputs into rows: classes and probabilities, values, or masks."""

    def __init__(self, kind: str | None, kind_from: str, classes: list[str] | None, top_k: int,
                 masks: MaskWriter) -> None:
        self.kind, self.kind_from, self.classes, self.top_k, self.masks = kind, kind_from, classes, top_k, masks

    def names(self, count: int) -> list[str]:
        """The run's class names when they fit ``count`` classes, else the indices."""
        return list(self.classes) if self.classes and len(self.classes) == count else [str(i) for i in range(count)]

    def rows(self, output: Any, labels: list[Any], stems: list[str], targets: Any) -> list[dict[str, Any]]:
        if output.ndim == 1:
            output = output[:, None]
        if output.ndim not in (2, 4):
            raise UserInputError(f"the model's output has shape {tuple(output.shape)}: tk predict reads (N, C) "
                                 "outputs (classes or values) and (N, C, H, W) outputs (per-pixel classes)")
        if self.kind is None:  # no loss term declared it: one column is a logit, more are class logits
            self.kind = "sigmoid" if output.shape[1] == 1 else "softmax"
        activation, task = OUTPUT_KINDS[self.kind]
        values = activate(output, activation)
        if output.ndim == 4:
            return self.mask_rows(values, task, labels, stems)
        rows: list[dict[str, Any]] = [{"input": label} for label in labels]
        names = self.names(2 if task == "independent" and values.shape[1] == 1 else values.shape[1])
        for row, target in zip(rows, target_cells(targets, names, task, len(rows))):
            if target is not None:
                row["target"] = target
        if task == "value":
            for row, value in zip(rows, values.tolist()):
                row.update({"value": value[0]} if len(value) == 1 else {f"value{i}": v for i, v in enumerate(value)})
            return rows
        self.class_cells(rows, values, task, names)
        return rows

    def class_cells(self, rows: list[dict[str, Any]], values: Any, task: str, names: list[str]) -> None:
        """``prediction``, ``probability`` and, with top-k above 1, ``top1, p1, ...``."""
        import torch

        multilabel = task == "independent" and values.shape[1] > 1
        if task == "independent" and not multilabel:  # one logit: class 1 with p, class 0 with 1 - p
            values = torch.cat([1 - values, values], dim=1)
        probabilities, order = values.sort(dim=1, descending=True, stable=True)
        k = min(self.top_k, values.shape[1])
        for i, row in enumerate(rows):
            top = [(names[j], p) for j, p in zip(order[i, :k].tolist(), probabilities[i, :k].tolist())]
            if multilabel:  # every class from the threshold on; the probability is the highest one's
                chosen = [names[j] for j in (values[i] >= THRESHOLD).nonzero().flatten().tolist()]
                row["prediction"] = ";".join(chosen)
            else:
                row["prediction"] = top[0][0]
            row["probability"] = top[0][1]
            if self.top_k > 1:
                for rank, (name, p) in enumerate(top, start=1):
                    row[f"top{rank}"], row[f"p{rank}"] = name, p

    def mask_rows(self, values: Any, task: str, labels: list[Any], stems: list[str]) -> list[dict[str, Any]]:
        """One mask per input: the class index per pixel (multiclass: the argmax; one
        channel: 1 from the threshold on); multilabel: a 0/1 mask per class."""
        if task == "value":
            raise UserInputError(f"the model's output has shape {tuple(values.shape)} and is read as values "
                                 f"({self.kind_from}): per-pixel values are not written; tk predict writes "
                                 "per-pixel classes (give --output-kind softmax or sigmoid to read them as such)")
        if task == "multiclass":
            masks = values.argmax(dim=1)
        elif values.shape[1] == 1:
            masks = (values[:, 0] >= THRESHOLD).long()
        else:
            masks = (values >= THRESHOLD).long()
        names = self.names(values.shape[1])
        rows = []
        for label, stem, mask in zip(labels, stems, masks):
            if mask.ndim == 3:  # multilabel: one file per class
                written = [self.masks.write(m, f"{stem}.{name}") for m, name in zip(mask, names)]
                cell = ";".join(written) if self.masks.folder is not None else mask
            else:
                cell = self.masks.write(mask, stem)
            rows.append({"input": label, "mask": cell})
        return rows


def target_cells(targets: Any, names: list[str], task: str, count: int) -> list[Any]:
    """The dataset's target per row when it is one number (a class index, a value), shown
    as a class name for classification; ``None`` cells otherwise (masks, no targets)."""
    import torch

    if not isinstance(targets, torch.Tensor) or targets.ndim > 2 or (targets.ndim == 2 and targets.shape[1] != 1):
        return [None] * count
    flat = targets.reshape(-1).tolist()
    if task == "value":
        return [float(v) for v in flat]
    return [names[int(v)] if float(v).is_integer() and 0 <= int(v) < len(names) else v for v in flat]


# -- masks --------------------------------------------------------------------------------------


def voc_palette() -> list[int]:
    """PASCAL VOC's label colours (0 black, 1 dark red, 2 dark green, 3 olive, ...), the
    usual palette of segmentation label PNGs: 256 RGB triples, flattened."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        for shift in range(7, -1, -1):
            red |= (index & 1) << shift
            green |= ((index >> 1) & 1) << shift
            blue |= ((index >> 2) & 1) << shift
            index >>= 3
        palette += [red, green, blue]
    return palette


def mask_folder(out: str | Path | None, out_dir: str | Path | None) -> Path | None:
    """``out_dir``, else ``<out stem>-masks`` next to the CSV, else none (masks stay tensors)."""
    if out_dir is not None:
        return Path(out_dir)
    if out is not None:
        return Path(out).with_name(f"{Path(out).stem}-masks")
    return None


class MaskWriter:
    """Writes masks as PNG files: class indices as the pixel values of a palette PNG
    (VOC colours, so a viewer shows them; PIL and most readers give back the indices),
    or 16-bit grey for more than 256 classes. Without a folder, masks stay tensors."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.palette: list[int] | None = None

    def write(self, mask: Any, stem: str) -> Any:
        if self.folder is None:
            return mask
        import torch
        from PIL import Image

        path = self.folder / f"{stem}.png"
        many = int(mask.max()) > 255
        array = mask.to(torch.int32 if many else torch.uint8).numpy()
        image = Image.fromarray(array.astype("uint16") if many else array)
        if not many:
            self.palette = self.palette or voc_palette()
            image.putpalette(self.palette)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
        except OSError as exc:
            raise UserInputError(f"--out-dir {self.folder}: cannot write {path}: {exc.strerror or exc}") from None
        return str(path)


# -- what is predicted: image files or a dataset's samples ---------------------------------------


@dataclass
class Source:
    """The inputs as a map-style dataset of ``(input, target or index)``, with the row
    label (path or index) and a unique file stem (for masks) of each."""

    dataset: Any
    labels: list[Any]
    stems: list[str]
    collate: Any = None
    has_targets: bool = False


class ImageInputs:
    """Image files read by the run's ``file_reader``, through the val transforms."""

    def __init__(self, paths: list[str], reader: Any, transform: Any) -> None:
        self.paths, self.reader, self.transform = paths, reader, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.reader(self.paths[index])
        return (self.transform(image) if self.transform is not None else image), index


def file_reader(resolved: Any) -> Any:
    """The run's dataset's ``file_reader`` (declared in its catalog entry's extras), built
    from the dataset's params; a run whose data are not images has none."""
    from torchtk.core.components import load_object

    entry = resolved.entry("data")
    reference = entry.component.extras.get("file_reader") if entry.component is not None else None
    if reference is None:
        raise UserInputError(f"this run's dataset {entry.ref.name!r} does not read image files (its samples are not "
                             "images): predict on samples of a dataset instead, --data '{\"params\": {...}}' (a JSON "
                             "fragment over the run's data)")
    return load_object(reference)(entry.params)


def input_files(inputs: Sequence[str | Path], extensions: Sequence[str]) -> list[tuple[str, str]]:
    """``(path, stem)`` of every input: a file as given, a folder as every image file
    (by ``extensions``) under it, recursively, sorted, hidden files and folders left
    out; the stem keeps the path below the folder, so masks mirror the folder."""
    files: list[tuple[str, str]] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(p.relative_to(path) for p in path.rglob("*")
                           if p.suffix.lower() in extensions and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise UserInputError(f"{given}: no images ({', '.join(extensions)}) in this folder or its subfolders")
            files += [(str(path / rel), rel.with_suffix("").as_posix()) for rel in found]
        elif path.is_file():
            files.append((str(given), path.stem))
        else:
            raise UserInputError(f"{given}: no such file or folder; give image files or folders of images")
    return files


def unique_stems(stems: list[str]) -> list[str]:
    """The stems, each repeated one suffixed ``-2``, ``-3``, ... (two ``a.png`` inputs)."""
    from torchtk.core.assembly import unique_keys

    return unique_keys(stems, separator="-")


def file_source(files: list[tuple[str, str]], reader: Any, transform: Any) -> Source:
    paths = [path for path, _ in files]
    return Source(ImageInputs(paths, reader, transform), paths, unique_stems([stem for _, stem in files]),
                  getattr(reader, "collate_fn", None))


def dataset_source(resolved: Any, transform: Any) -> Source:
    """Every sample of the dataset ``data`` builds, in its order, through the val
    transforms; a dataset of its own splits gives its val part (train without one).
    Rows are labelled by the sample's file where the dataset lists ``samples`` of
    ``(path, target)`` (image folders), else by index."""
    from torchtk.core.assembly import build
    from torchtk.core.data import Transformed, dataset_collate
    from torchtk.core.saved_run import rng_untouched
    from torchtk.core.state import Splits

    with rng_untouched():
        dataset = build(resolved, "data")
    if isinstance(dataset, Splits):
        dataset = dataset.val if dataset.val is not None and len(dataset.val) else dataset.train
    if dataset is None or len(dataset) == 0:
        raise UserInputError("--data: the dataset has no samples")
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list) and all(isinstance(s, tuple) and isinstance(s[0], str) for s in samples):
        labels: list[Any] = [path for path, *_ in samples]
        stems = unique_stems([Path(path).stem for path in labels])
    else:
        labels = list(range(len(dataset)))
        stems = [f"{i:0{len(str(len(dataset) - 1))}d}" for i in labels]
    wrapped = Transformed(dataset, transform) if transform is not None else dataset
    return Source(wrapped, labels, stems, dataset_collate(dataset), has_targets=True)



def data_overrides(run: Any, fragment: str | dict[str, Any]) -> list[str]:
    """The ``--set`` that puts the fragment over the run's ``data`` (as ``tk evaluate
    --data`` does): ``name`` and ``params`` go together (a fragment with either replaces
    both; without ``name`` it is the run's dataset), every other key (``transforms``,
    ``batch_size``) stays the run's unless the fragment gives it."""
    from torchtk.core.saved_run import data_fragment, merged_data

    saved = json.loads((run.path / "spec.json").read_text()).get("data") or {}
    return [f"data={json.dumps(merged_data(saved, data_fragment(fragment)))}"]


def resolved_with(run: Any, overrides: list[str]) -> Any:
    """The run's spec with the ``--data`` override, its problems blamed on ``--data``
    (the run's own spec was valid when it was read)."""
    from torchtk.core.errors import SpecError

    try:
        return run.resolved(overrides)
    except SpecError as exc:
        if not overrides:
            raise
        problems = [(path.split(": ", 1)[-1] if path.startswith("--set ") else path, message)
                    for path, message in exc.problems]
        raise SpecError(problems, "--data") from None


# -- the pass -----------------------------------------------------------------------------------


def _loader(source: Source, batch_size: int, num_workers: int, device: Any) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(source.dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=source.collate, pin_memory=device.type == "cuda")


def forward_batches(parts: Any, loader: Any) -> Iterator[tuple[Any, Any]]:
    """``(output, second)`` per batch: the model's float output on the CPU, under the
    run's precision (inputs cast to its ``input_dtype``, its autocast), no gradients."""
    import torch

    from torchtk.core.assembly import input_errors
    from torchtk.core.data import to_device

    model, device, dtype = parts.model, parts.device, parts.precision.input_dtype
    model.eval()
    with torch.no_grad():
        for inputs, second in loader:
            inputs = to_device(inputs, device, dtype)
            with input_errors("model: the forward pass fails on the inputs (after the run's val transforms)"):
                with parts.precision.autocast():
                    output = model(inputs)
            if not isinstance(output, torch.Tensor):
                raise UserInputError(f"the model returns {type(output).__name__}, not one tensor: tk predict reads "
                                     "one output tensor per batch")
            yield output.detach().float().cpu(), second


def write_csv(out: str | Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    """The rows as a CSV (floats with 6 significant digits), written atomically."""
    from torchtk.core.outputs import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    path = Path(out)
    try:
        atomic_write_text(path, buffer.getvalue())
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write the CSV there: {exc.strerror or exc}") from None
    return path
