"""``tk export``: a run's model written in the formats other tools read, each file checked.

Four formats, each written by torch's (or safetensors') own function:

=============  =======================  ==================================================
format         default file             written with
=============  =======================  ==================================================
exported       ``model.pt2``            ``torch.export.export`` + ``torch.export.save``
torchscript    ``model.torchscript.pt`` ``torch.jit.trace`` on the probe batch + ``save``
onnx           ``model.onnx``           ``torch.onnx.export(dynamo=True)`` (the onnx extra)
safetensors    ``model.safetensors``    ``safetensors.torch.save_model`` (the state_dict)
=============  =======================  ==================================================

The model is the run's own (:meth:`torchtk.core.saved_run.SavedRun.parts`: rebuilt from
``spec.json`` with the checkpoint's weights, in eval mode, in a ``*_true`` precision's
dtype; autocast precisions are not part of a file). The probe batch is the first few
samples of the run's validation data (:func:`torchtk.core.assembly.probe_batch`), with
the validation transforms. The batch dimension is dynamic where the format has one
(``torch.export.Dim`` for ``exported`` and ``onnx``; a trace keeps the size arithmetic).

Every file is checked before it is reported: it is loaded back fresh (``torch.export.load``,
``torch.jit.load``, an onnxruntime ``InferenceSession``, or ``safetensors`` loaded
strictly into a newly rebuilt model whose tensors were first set to NaN) and run on the
probe batch and on a batch of another size (the probe and half of it again); its outputs
must match the eager model's: exactly for ``safetensors`` on the CPU, else within
``|a - b| <= atol + rtol * |b|`` (:data:`TOLERANCES`, by the output's dtype). A file that
fails the check is removed (:class:`ExportMismatch`, exit 1); a model that torch cannot
write in a format is :class:`ExportFailed` (exit 2, torch's reason in one line).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import math
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from torchtk.core.errors import TorchtkError, UserInputError

__all__ = ["FORMATS", "TOLERANCES", "Exported", "ExportFailed", "ExportMismatch", "export", "parse_formats"]

EXPORT_STEPS = ("seed", "data", "model", "precision")  # the model and the data of the probe batch
# (rtol, atol) by the output's dtype: torch.testing's for the low precisions, looser than its float32
# default (1.3e-6) since another runtime (onnxruntime's fused kernels) may sum in another order
TOLERANCES = {"float64": (1e-7, 1e-7), "float32": (1e-4, 1e-5), "bfloat16": (1.6e-2, 1e-5),
              "float16": (1e-3, 1e-5)}
ONNX_EXTERNAL_BYTES = 1_800_000_000  # weights beyond this go to model.onnx.data (protobuf's 2 GB limit)
DEPRECATED = re.compile(r"`torch\.jit\.\w+` is deprecated")
DEPRECATION_NOTE = "torch deprecates TorchScript (its FutureWarnings are not shown); torch.export is its successor"
METADATA_FILE = "torchtk.json"  # the run's name, epoch and classes inside a .pt2 or TorchScript file


class ExportFailed(UserInputError):
    """torch cannot write the model in the requested format (exit 2): another format may do."""


class ExportMismatch(TorchtkError):
    """The written file does not reproduce the eager model (exit 1); the file is removed."""


@dataclass
class Exported:
    """One file written and checked: ``max_abs_diff`` over the checked batches, against
    the eager model's outputs, within ``atol`` + ``rtol`` * |eager|."""

    format: str
    path: Path
    size: int  # bytes, with an ONNX model's external data file
    max_abs_diff: float
    atol: float
    rtol: float
    batch_sizes: tuple[int, ...]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "size": self.size,
                "max_abs_diff": self.max_abs_diff, "atol": self.atol, "rtol": self.rtol,
                "batch_sizes": list(self.batch_sizes), "files": [str(f) for f in self.files], "notes": self.notes}


def human_size(size: int) -> str:
    """Bytes as ``852 B``, ``14.0 kB``, ``4.7 MB`` (powers of 1000, as ``ls --si``)."""
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 999.95 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


@dataclass
class Subject:
    """What every format exports and checks against: the eager model and its outputs."""

    run: Any
    checkpoint: Any
    device: Any
    model: Any
    batches: list[Any]  # the probe batch, and one of another size
    expected: list[list[Any]]  # the eager model's output tensors on each batch
    metadata: dict[str, Any]  # run, checkpoint, epoch, classes, model, input_shape, input_dtype

    @property
    def string_metadata(self) -> dict[str, str]:
        """The metadata as safetensors and ONNX keep it: strings, the others as JSON."""
        return {key: value if isinstance(value, str) else json.dumps(value) for key, value in self.metadata.items()}

    def fresh_model(self) -> Any:
        return self.run.model(self.checkpoint, device=str(self.device))


@dataclass(frozen=True)
class Format:
    name: str
    file_name: str
    writer: str  # what writes it, named in errors
    write: Callable[[Subject, Path], list[str]]  # returns notes (warnings worth showing)
    load: Callable[[Subject, Path], Callable[[Any], Any]]
    needs: tuple[str, ...] = ()  # modules that must be importable
    extra: str = ""  # the pip extra that installs them
    exact_on_cpu: bool = False
    instead: str = "exported or torchscript"  # what to try when torch cannot write this format


# -- the formats --------------------------------------------------------------------------


def _batch_dim() -> Any:
    """``dynamic_shapes`` for ``(inputs,)``: the batch dimension free, every other fixed."""
    import torch

    return ({0: torch.export.Dim("batch")},)


def _write_exported(subject: Subject, path: Path) -> list[str]:
    import torch

    program = torch.export.export(subject.model, (subject.batches[0],), dynamic_shapes=_batch_dim())
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(subject.metadata)})
    return []


def _load_exported(subject: Subject, path: Path) -> Callable[[Any], Any]:
    import torch

    return torch.export.load(path).module()


@contextmanager
def _torchscript_warnings(notes: list[str]) -> Iterator[None]:
    """torch 2.14 deprecates TorchScript: its FutureWarning on every jit call becomes one
    note; the tracer's own warnings (a shape or a branch baked into the trace) are notes
    too. Other warnings are shown as they are."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, FutureWarning) and DEPRECATED.search(str(warning.message)):
            if DEPRECATION_NOTE not in notes:
                notes.append(DEPRECATION_NOTE)
        elif issubclass(warning.category, torch.jit.TracerWarning):
            line = f"torch.jit.trace: {str(warning.message).splitlines()[0].split('. ')[0]}"
            if line not in notes:
                notes.append(line)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _write_torchscript(subject: Subject, path: Path) -> list[str]:
    import torch

    notes: list[str] = []
    with _torchscript_warnings(notes):
        traced = torch.jit.trace(subject.model, (subject.batches[0],), check_trace=False, strict=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(subject.metadata)})
    return notes


def _load_torchscript(subject: Subject, path: Path) -> Callable[[Any], Any]:
    import torch

    with _torchscript_warnings([]):
        return torch.jit.load(str(path), map_location=subject.device)


def _write_onnx(subject: Subject, path: Path) -> list[str]:
    import torch

    big = sum(p.numel() * p.element_size() for p in subject.model.state_dict().values()) > ONNX_EXTERNAL_BYTES
    outputs = len(subject.expected[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(subject.model, (subject.batches[0],), None, dynamo=True, verbose=False,
                                    dynamic_shapes=_batch_dim(), input_names=["input"],
                                    output_names=["output"] if outputs == 1 else None)
    program.model.metadata_props.update(subject.string_metadata)
    program.save(path, external_data=big)
    return []


def _load_onnx(subject: Subject, path: Path) -> Callable[[Any], Any]:
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: Any) -> list[Any]:
        return [torch.from_numpy(array) for array in session.run(None, {name: batch.detach().cpu().numpy()})]

    return run


def _write_safetensors(subject: Subject, path: Path) -> list[str]:
    from safetensors.torch import save_model

    save_model(subject.model, str(path), metadata=subject.string_metadata)  # tied tensors saved once
    return []


def _load_safetensors(subject: Subject, path: Path) -> Callable[[Any], Any]:
    """The file loaded strictly into a newly rebuilt model, every float tensor first set to
    NaN, so a tensor the file lacks cannot pass the check with the checkpoint's value."""
    import torch
    from safetensors.torch import load_model

    model = subject.fresh_model()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(math.nan)
    missing, unexpected = load_model(model, str(path), strict=True, device=str(subject.device))
    if missing or unexpected:  # strict raises first; kept for a safetensors that only reports
        raise RuntimeError(f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    return model


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("exported", "model.pt2", "torch.export", _write_exported, _load_exported,
           instead="torchscript (a trace) or safetensors (the weights)"),
    Format("torchscript", "model.torchscript.pt", "torch.jit.trace", _write_torchscript, _load_torchscript,
           instead="exported or safetensors (the weights)"),
    Format("onnx", "model.onnx", "torch.onnx.export", _write_onnx, _load_onnx,  # through torch.export
           needs=("onnx", "onnxscript", "onnxruntime"), extra="onnx",
           instead="exported, torchscript (a trace) or safetensors (the weights)"),
    Format("safetensors", "model.safetensors", "safetensors", _write_safetensors, _load_safetensors,
           needs=("safetensors",), extra="safetensors", exact_on_cpu=True),
)}


# -- choosing formats and files -----------------------------------------------------------


def parse_formats(values: str | list[str] | tuple[str, ...]) -> list[str]:
    """Format names from ``--format`` values (repeated, or comma lists; ``all``), in order,
    each once; an unknown name or a missing package is an input error."""
    items = [values] if isinstance(values, str) else list(values or ())
    names: list[str] = []
    for item in (part.strip().lower() for value in items for part in str(value).split(",")):
        if not item:
            continue
        chosen = list(FORMATS) if item == "all" else [item]
        if item != "all" and item not in FORMATS:
            close = difflib.get_close_matches(item, list(FORMATS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserInputError(f"--format {item}: unknown format; formats: {', '.join(FORMATS)} "
                                 f"(or all, or a comma list){hint}")
        names += [name for name in chosen if name not in names]
    if not names:
        raise UserInputError(f"--format: give at least one of {', '.join(FORMATS)} (or all)")
    return names


def check_installed(names: list[str]) -> None:
    """Each format's packages are there (``onnx``: the onnx extra), else one install hint."""
    for name in names:
        missing = [module for module in FORMATS[name].needs if importlib.util.find_spec(module) is None]
        if missing:
            raise UserInputError(f"--format {name} needs {', '.join(missing)}, which is not installed: "
                                 f"pip install 'torchtk[{FORMATS[name].extra}]'")


def output_paths(run_dir: Path, names: list[str], out: str | Path | None) -> dict[str, Path]:
    """``RUN_DIR/export/<file>`` by default; ``out`` is the file for one format, the folder
    (given the default file names) for several."""
    if out is not None and len(names) == 1:
        path = Path(out)
        if path.is_dir():
            raise UserInputError(f"--out {out}: is a folder; give the file to write, such as "
                                 f"{Path(out) / FORMATS[names[0]].file_name}")
        return {names[0]: path}
    folder = Path(out) if out is not None else run_dir / "export"
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"--out {out}: is a file; with several formats --out names a folder")
    return {name: folder / FORMATS[name].file_name for name in names}


# -- the subject and the check ------------------------------------------------------------


def _device(name: str) -> str:
    """``--device`` checked (the run's own ``trainer.device`` is not used: exports are made
    where the user says, the CPU by default)."""
    from torchtk.core.distributed import resolve_device

    try:
        return str(resolve_device(name))
    except (UserInputError, RuntimeError) as exc:
        why = re.sub(r"^trainer\.device=\S+, but ", "", str(exc).splitlines()[0])
        raise UserInputError(f"--device {name}: {why}" + ("" if "use" in why else "; use cpu, cuda or auto")) from None


def _prepare(run: Any, checkpoint: Any, device: str) -> Subject:
    """The eager model with the checkpoint's weights, the probe batch (and one of another
    size) on ``device``, the eager outputs, and the metadata every file carries."""
    import torch

    from torchtk.core.assembly import probe_batch
    from torchtk.core.data import to_device

    parts = run.parts(checkpoint, device=device, steps=EXPORT_STEPS)
    batch = probe_batch(parts.val, parts.train)
    if batch is None:
        raise UserInputError(f"{run.path}: the run's data has no samples to make a probe batch of")
    if not isinstance(batch[0], torch.Tensor):
        raise UserInputError(f"{run.path}: the run's batches give a model input of type {type(batch[0]).__name__}; "
                             "tk export takes models called with one tensor")
    inputs = to_device(batch[0], parts.device, parts.precision.input_dtype)
    batches = [inputs, torch.cat([inputs, inputs[: max(1, len(inputs) // 2)]])]
    try:
        with torch.no_grad():
            expected = [output_tensors(parts.model(b)) for b in batches]
    except TypeError as exc:
        raise UserInputError(f"{run.path}: tk export takes models that return tensors: {exc}") from None
    payload = run.read_checkpoint(checkpoint)
    metadata = {"run": run.name, "checkpoint": run.checkpoint_path(checkpoint).name, "epoch": payload.get("epoch"),
                "classes": parts.classes, "model": run.spec.model.model_dump(by_alias=True, mode="json"),
                "input_shape": list(inputs.shape[1:]), "input_dtype": str(inputs.dtype).removeprefix("torch.")}
    return Subject(run, checkpoint, parts.device, parts.model, batches, expected, metadata)


def output_tensors(output: Any) -> list[Any]:
    """A model output's tensors in order: a tensor, a tuple/list or a dict of them (as
    torch.export and ONNX flatten it)."""
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in output_tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in output_tensors(item)]
    if hasattr(output, "detach"):
        return [output.detach()]
    raise TypeError(f"the model returns a {type(output).__name__}, not tensors")


def tolerance(format: Format, subject: Subject, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """(atol, rtol): exact for safetensors on the CPU; else by the output's dtype, or as given."""
    if format.exact_on_cpu and subject.device.type == "cpu":
        default = (0.0, 0.0)
    else:
        dtype = str(subject.expected[0][0].dtype).removeprefix("torch.")
        rel, absolute = TOLERANCES.get(dtype, (0.0, 0.0))  # integer outputs: exact
        default = (absolute, rel)
    return (default[0] if atol is None else atol, default[1] if rtol is None else rtol)


def compare(actual: list[Any], expected: list[Any], atol: float, rtol: float) -> tuple[float, bool]:
    """The max absolute difference over all output tensors, and whether every element is
    within ``atol + rtol * |expected|`` (shapes must agree; NaN matches only NaN)."""
    import torch

    if len(actual) != len(expected):
        return math.inf, False
    worst, ok = 0.0, True
    for a, e in zip(actual, expected):
        a, e = torch.as_tensor(a).cpu(), e.cpu()
        if a.shape != e.shape:
            return math.inf, False
        a64, e64 = a.double(), e.double()
        diff = (a64 - e64).abs().masked_fill(a64.isnan() & e64.isnan(), 0.0).nan_to_num(nan=math.inf)
        worst = max(worst, diff.max().item() if diff.numel() else 0.0)
        ok = ok and torch.allclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    return worst, ok


def _files(path: Path) -> list[Path]:
    """The file and what an exporter wrote beside it (ONNX's external data)."""
    return [p for p in (path, path.with_name(path.name + ".data")) if p.exists()]


def _remove(path: Path) -> None:
    for written in _files(path):
        written.unlink()


def one_line(exc: BaseException) -> str:
    """An exporter's exception in one line: its type, the message's first line (without
    torch's pointers to more logs), the first bullet under it (torch.export's "you marked
    batch as dynamic but ...") and the user code where it was raised, when torch names it.
    Of torch.onnx's wrappers, the innermost cause."""
    while type(exc).__module__.startswith("torch.onnx") and exc.__cause__ is not None:
        exc = exc.__cause__  # torch.onnx wraps the error that says why (torch.export's, a missing op)
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # colour codes
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = re.sub(r"\s*For more information.*$", "", lines[0]) if lines else ""
    bullet = next((line[2:].split(". ")[0] for line in lines[1:] if line.startswith("- ")), "")
    call = re.search(r'raised this error:\s*File "([^"]+)", line (\d+), in (\w+)', text)
    where = f" at {Path(call[1]).name}:{call[2]} in {call[3]}" if call else ""
    reason = " ".join(part for part in (head, bullet) if part)[:300]
    return f"{type(exc).__name__}: {reason}{where}" if reason else f"{type(exc).__name__}{where}"


@contextmanager
def _quiet_failure() -> Iterator[None]:
    """torch's exporters log warnings with stack traces, and torch.export prints its partial
    graph to stderr, on failures that they also raise; the raised error is what tk reports,
    in one line. What they print on success is passed on."""
    import io
    import logging
    import sys
    from contextlib import redirect_stderr

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "torch" or name.startswith("torch.")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    printed = io.StringIO()
    try:
        with redirect_stderr(printed):
            yield
        sys.stderr.write(printed.getvalue())
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_one(name: str, subject: Subject, path: Path, atol: float | None = None,
               rtol: float | None = None) -> Exported:
    """Write ``subject``'s model as ``name`` to ``path``, load it back and check it on
    every batch; a file that fails is removed."""
    import torch

    format = FORMATS[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), _quiet_failure():
            notes = format.write(subject, path)
    except Exception as exc:  # torch's exporters raise many types: each is "cannot export"
        _remove(path)
        raise ExportFailed(f"--format {name}: {format.writer} cannot export this model ({one_line(exc)}); "
                           f"try --format {format.instead}") from exc
    atol, rtol = tolerance(format, subject, atol, rtol)
    try:
        runner = format.load(subject, path)
    except Exception as exc:
        _remove(path)
        raise ExportMismatch(f"--format {name}: the written file does not load ({one_line(exc)}); "
                             f"{path} was removed") from exc
    diffs = [_check(name, runner, subject.batches, index, wanted, path, (atol, rtol))
             for index, wanted in enumerate(subject.expected)]
    sizes = tuple(len(batch) for batch in subject.batches)
    worst = max(diff for diff, _ in diffs)
    if not all(fits for _, fits in diffs):
        _remove(path)
        shown = ", ".join(f"{diff:.3g} on {size} samples" for (diff, _), size in zip(diffs, sizes))
        raise ExportMismatch(f"--format {name}: the written file's outputs differ from the model's (max |diff| "
                             f"{shown}; allowed: atol {atol:g} + rtol {rtol:g} x |output|); {path} was removed")
    files = _files(path)
    return Exported(name, path, sum(f.stat().st_size for f in files), worst, atol, rtol, sizes, files, notes)


def _check(name: str, runner: Callable[[Any], Any], batches: list[Any], index: int, wanted: list[Any],
           path: Path, allowed: tuple[float, float]) -> tuple[float, bool]:
    """The loaded file run on ``batches[index]``: (max |diff| to the eager outputs, within tolerance)."""
    import torch

    batch = batches[index]
    try:
        with torch.no_grad():
            got = output_tensors(runner(batch))
    except Exception as exc:
        _remove(path)
        fixed = f" after it ran on {len(batches[0])} (a fixed batch size?)" if index else ""
        raise ExportMismatch(f"--format {name}: the written file fails on a batch of {len(batch)} samples{fixed} "
                             f"({one_line(exc)}); {path} was removed") from exc
    return compare(got, wanted, *allowed)


def export(run_dir: str | Path, format: str | list[str] | tuple[str, ...], checkpoint: str | Path = "best",
           out: str | Path | None = None, device: str = "cpu", atol: float | None = None,
           rtol: float | None = None, registry: Any = None,
           on_exported: Callable[[Exported], None] | None = None) -> list[Exported]:
    """Write the run's model in each ``format`` (a name, a comma list, a list, or ``all``)
    and check each file against the eager model; returns what was written, in order.
    ``on_exported`` sees each result as soon as its file passed (the CLI prints it).
    The first failure raises (:class:`ExportFailed`, :class:`ExportMismatch`); the files
    written before it stay."""
    from torchtk.core.saved_run import load_run

    names = parse_formats(format)
    run = load_run(run_dir, registry=registry)  # not a run directory is said first, whatever is installed
    check_installed(names)
    paths = output_paths(run.path, names, out)
    subject = _prepare(run, checkpoint, _device(device))
    results = []
    for name in names:
        results.append(export_one(name, subject, paths[name], atol, rtol))
        if on_exported is not None:
            on_exported(results[-1])
    return results
