"""torchtk: the training techniques every PyTorch user rewrites, as named, validated,
pluggable components.

Importing torchtk is cheap: torch is imported only when a component is built or a run
starts, and no plugin is loaded until the registry is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchtk.core.components import Component, NoParams, Params
    from torchtk.core.errors import TorchtkError
    from torchtk.core.hookspecs import hookimpl
    from torchtk.core.registry import Registry
    from torchtk.core.state import Precision, RunInfo, Splits, TrainState

    registry: Registry  # built on first access, by __getattr__ below
    __version__: str

__all__ = [
    "Component", "NoParams", "Params", "Precision", "RunInfo", "Splits", "TrainState", "TorchtkError",
    "hookimpl", "load_spec", "registry", "train",
]

# The public names, imported on first use (PEP 562): ``import torchtk`` itself imports
# nothing, so ``tk`` installs its signal handlers before pydantic and pluggy load.
_LAZY = {"Component": "components", "NoParams": "components", "Params": "components",
         "TorchtkError": "errors", "hookimpl": "hookspecs", "Precision": "state", "RunInfo": "state",
         "Splits": "state", "TrainState": "state"}


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the only place it is written."""
    from importlib import metadata

    try:
        return metadata.version("torchtk")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def load_spec(source: Any, overrides: list[str] | None = None, registry: Registry | None = None) -> Any:
    """Read and validate a run spec (a path, a bundled example name, or a dict), against
    ``registry`` (default: the process-wide one)."""
    from torchtk.core.spec import load_spec as _load_spec

    return _load_spec(source, overrides=overrides, registry=registry)


def train(spec: Any, **options: Any) -> Any:
    """Run a spec (a ``RunSpec``, path, example name or dict); returns a ``RunResult``."""
    from torchtk.core.engine import train as _train

    return _train(spec, **options)


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
