"""torchtk: the training techniques every PyTorch user rewrites, as named, validated,
pluggable components.

Importing torchtk is cheap: torch is imported only when a component is built or a run
starts, and no plugin is loaded until the registry is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchtk.core.components import Component, InputPath, NoParams, Params, PathParam
    from torchtk.core.errors import TorchtkError
    from torchtk.core.hookspecs import hookimpl
    from torchtk.core.registry import Registry
    from torchtk.core.state import Precision, RunInfo, Splits, TrainState

    registry: Registry  # built on first access, by __getattr__ below
    __version__: str

__all__ = [
    "Component", "InputPath", "NoParams", "Params", "PathParam", "Precision", "RunInfo", "Splits", "TrainState",
    "TorchtkError", "evaluate", "export", "hookimpl", "load_run", "load_spec", "predict", "registry", "train",
]

# The public names, imported on first use (PEP 562): ``import torchtk`` itself imports
# nothing, so ``tk`` installs its signal handlers before pydantic and pluggy load.
_LAZY = {"Component": "components", "NoParams": "components", "Params": "components", "PathParam": "components",
         "InputPath": "components",
         "TorchtkError": "errors", "hookimpl": "hookspecs", "Precision": "state", "RunInfo": "state",
         "Splits": "state", "TrainState": "state"}


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the only place it is written."""
    from importlib import metadata

    try:
        return metadata.version("torchtk")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def load_spec(source: Any, overrides: list[str] | None = None, registry: Registry | None = None,
              plugins: list[str] | None = None) -> Any:
    """Read and validate a run spec (a path, a bundled example name, or a dict), against
    ``registry`` (default: the process-wide one). The spec's own ``plugins`` are found, not
    imported; ``plugins=`` (files or modules, as ``tk -p``) are imported first."""
    from torchtk.core.spec import load_spec as _load_spec

    return _load_spec(source, overrides=overrides, registry=registry, plugins=plugins or ())


def train(spec: Any, **options: Any) -> Any:
    """Run a spec (a ``RunSpec``, path, example name or dict); returns a ``RunResult``."""
    from torchtk.core.engine import train as _train

    return _train(spec, **options)


def load_run(run_dir: Any, registry: Registry | None = None) -> Any:
    """Read a run directory: its spec, history, best/last rows and class names, and
    ``.model(checkpoint="best")``, the model rebuilt with that checkpoint's weights."""
    from torchtk.core.saved_run import load_run as _load_run

    return _load_run(run_dir, registry=registry)


def predict(run_dir: Any, inputs: Any = (), **options: Any) -> list[dict[str, Any]]:
    """Apply a run's model to image files and folders (or, with ``data=``, a dataset's
    samples): one row per input, as ``tk predict`` writes them (``out=`` also writes the
    CSV). See :func:`torchtk.core.prediction.predict` for the options."""
    from torchtk.core.prediction import predict as _predict

    return _predict(run_dir, inputs, **options).rows


def evaluate(run_dir: Any, checkpoint: Any = "best", data: Any = None, overrides: list[str] | None = None,
             metrics: list[Any] | None = None, device: str | None = None, split: str | None = None) -> Any:
    """Score a run's checkpoint with its loss and metrics on its validation split, or on
    ``data`` (a data-spec fragment); writes ``eval-<timestamp>.json`` into the run
    directory and returns an ``EvalResult`` (``values``, ``path``, ``samples``)."""
    from torchtk.core.evaluation import evaluate as _evaluate

    return _evaluate(run_dir, checkpoint=checkpoint, data=data, overrides=overrides, metrics=metrics, device=device,
                     split=split)


def export(run_dir: Any, format: Any, **options: Any) -> list[Any]:
    """Write a run's model as ``exported`` (torch.export ``.pt2``), ``torchscript``, ``onnx``
    or ``safetensors`` (a name, a list or ``"all"``), each file loaded back and checked
    against the model on a probe batch; returns the written files' ``Exported`` results."""
    from torchtk.core.export import export as _export

    return _export(run_dir, format, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"torchtk.core.{_LAZY[name]}"), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name == "__version__":
        globals()["__version__"] = version = _version()
        return version
    if name == "registry":
        from torchtk.core.registry import get_registry

        return get_registry()
    raise AttributeError(f"module 'torchtk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"__version__"})
