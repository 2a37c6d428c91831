"""Code a spec names by import path: ``"model": {"import": "package.module:factory"}``.

Such a spec runs code by design: ``tk train`` imports the module (running whatever it
runs on import) and calls the factory with the spec's params. Validation never does:
``tk validate`` and ``torchtk.load_spec`` only look the module up on the Python path
(:func:`find_module`, through the import system's finders, without executing it) and
report what ``tk train`` would import (:func:`spec_imports`). :func:`build_model` is
the one place the import and the call happen, and any failure there is an input error
naming the spec path (``model.import``, ``model.params``, ``model``).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from torchtk.core.errors import UserInputError


def find_module(name: str) -> bool:
    """Whether ``name`` (``pkg.sub``) can be imported, decided without importing it or
    its parent packages: each part is looked up by the finders of ``sys.meta_path``
    (the file system, zip files, editable installs), as ``import`` would look it up."""
    search: Any = None
    parts = name.split(".")
    for index in range(len(parts)):
        full = ".".join(parts[: index + 1])
        module = sys.modules.get(full)
        if module is not None:
            search = getattr(module, "__path__", None)
        else:
            spec = _find_spec(full, search)
            if spec is None:
                return False
            search = spec.submodule_search_locations
        if index < len(parts) - 1 and search is None:
            return False  # a module, not a package: it has no submodules
    return True


def _find_spec(name: str, search: Any) -> importlib.machinery.ModuleSpec | None:
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, search)
        except Exception:  # a finder that cannot answer is no answer
            continue
        if spec is not None:
            return spec
    return None


def check_reference(path: str, reference: str) -> list[tuple[str, str]]:
    """Problems of an import reference found without importing it: its module must be on
    the Python path."""
    module = reference.partition(":")[0]
    if find_module(module):
        return []
    return [(path, f"no module named {module!r} on the Python path (sys.path); the module must be importable "
                   f"where tk runs (tk validate looks for it without importing it)")]


def spec_imports(resolved: Any) -> list[dict[str, str]]:
    """What ``tk train`` would import for this spec: ``{"path", "module", "object"}`` per
    import reference (``model.import``), in build order."""
    found = []
    for entry in resolved.entries:
        reference = getattr(entry.ref, "import_", None)
        if entry.component is None and reference:
            found.append({"path": f"{entry.path}.import", "module": reference.partition(":")[0],
                          "object": reference})
    return found


def build_model(reference: str, params: dict[str, Any]) -> Any:
    """Import ``module:factory`` and call it with ``params``: the model, or an input error."""
    import inspect

    from torchtk.core.components import load_object

    try:
        factory = load_object(reference)
    except (Exception, SystemExit) as exc:  # importing runs the module: anything can happen there
        raise UserInputError(f"model.import: cannot import {reference!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(factory):
        raise UserInputError(f"model.import: {reference!r} is {type(factory).__name__}, not callable; name a "
                             "function or class that returns a torch.nn.Module")
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise UserInputError(f"model.params: {reference} does not accept these params: {exc}") from None
    except ValueError:  # no signature (builtins): let the call decide
        pass
    try:
        return factory(**params)
    except UserInputError:
        raise
    except Exception as exc:
        raise UserInputError(f"model: building model {reference!r} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # as assembly.input_errors says it: tk must not end as a success
        raise UserInputError(f"model: building model {reference!r} failed: it called sys.exit({exc.code!r})") from exc


def check_module(model: Any, what: str) -> Any:
    """A model factory's result must be a ``torch.nn.Module``."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UserInputError(f"model: {what} returned {_describe(model)}, not a torch.nn.Module; a model factory "
                             "must return the network")
    return model


def _describe(value: Any) -> str:
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {shown}" if value is not None else "None"
