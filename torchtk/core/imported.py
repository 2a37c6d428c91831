"""Code a spec names by import path, ``"loss": {"import": "package.module:factory"}`` in any
slot, and objects given from Python (``torchtk.train(spec, loss=my_fn)``).

Such a spec runs code by design: ``tk train`` imports the module (running whatever it
runs on import) and calls the factory with the spec's params. Validation never does:
``tk validate`` and ``torchtk.load_spec`` only look the module up on the Python path
(:func:`find_module`, through the import system's finders, without executing it) and
report what ``tk train`` would import (:func:`spec_imports`), the plugin files and
modules of ``plugins`` and ``-p`` included. :func:`build_imported` is the one place the
import and the call happen, for every kind, and any failure there is an input error
naming the spec path (``loss[0].import``, ``loss[0].params``, ``loss[0]``).
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
    return _locate(name) is not None


def module_origin(name: str) -> str:
    """The file ``name`` would be imported from, found without importing it ("" if none)."""
    origin = _locate(name)
    return origin if origin not in (None, "built-in", "frozen") else ""


def _locate(name: str) -> str | None:
    """``name``'s origin (its file, or "" when it has none), or None when it is not there."""
    search: Any = None
    origin: str | None = ""
    parts = name.split(".")
    for index in range(len(parts)):
        full = ".".join(parts[: index + 1])
        module = sys.modules.get(full)
        if module is not None:
            search, origin = getattr(module, "__path__", None), getattr(module, "__file__", None) or ""
        else:
            spec = _find_spec(full, search)
            if spec is None:
                return None
            search, origin = spec.submodule_search_locations, spec.origin or ""
        if index < len(parts) - 1 and search is None:
            return None  # a module, not a package: it has no submodules
    return origin


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


def check_reference(path: str, reference: str, plugin_modules: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Problems of an import reference found without importing it: its module must be on
    the Python path, or be a plugin the spec names (``plugins``: imported first)."""
    module = reference.partition(":")[0]
    if module in plugin_modules or module.split(".")[0] in plugin_modules or find_module(module):
        return []
    return [(path, f"no module named {module!r} on the Python path (sys.path); the module must be importable "
                   f"where tk runs (tk validate looks for it without importing it), or a file the spec's "
                   f"\"plugins\" name (\"plugins\": [\"./{module.split('.')[0]}.py\"])")]


def spec_imports(resolved: Any) -> list[dict[str, str]]:
    """What ``tk train`` would import for this spec: the plugins it names (``plugins[i]``,
    ``-p``; ``{"path", "module", "object", "plugin", "imported"}``: whether this process has
    imported it, as ``-p`` does), then ``{"path", "module",
    "object"}`` per import reference (``model.import``, ``loss[0].import``), in build order."""
    plugins = resolved.registry.host.plugins
    found = [{**plugin.described(), "imported": getattr(plugins.get(plugin.module), "module", None) == plugin.target}
             for plugin in getattr(resolved, "plugins", ())]
    for entry in resolved.entries:
        reference = getattr(entry.ref, "import_", None)
        if entry.component is None and reference:
            found.append({"path": f"{entry.path}.import", "module": reference.partition(":")[0],
                          "object": reference})
    return found


# The run object a factory takes first, positionally, as torch.optim's optimizers and
# lr_scheduler's schedulers do (``SGD(params, lr=0.1)``, ``StepLR(optimizer, step_size=2)``);
# every other run object of the kind (torchtk.core.components.KINDS: ``model`` for a loss,
# ``run`` for a scheduler, ``classes`` for a metric, ``device`` for a precision) is passed
# by keyword when the factory's signature names it.
FIRST_ARGUMENT = {"optimizer": "parameters", "scheduler": "optimizer"}


def build_imported(entry: Any, objects: dict[str, Any], context: dict[str, Any]) -> Any:
    """Build the component at ``entry`` that no plugin declares: an object given from
    Python (used as it is; for an optimizer or scheduler, a factory called as an imported
    one), or ``module:factory`` imported and called with the params and run objects. The
    one place spec-named code is imported; any failure is an input error naming the path."""
    ref, path, kind = entry.ref, entry.path, entry.kind
    if ref.object_ is not None:
        given = objects[path]  # resolve checked that it is there
        if kind not in FIRST_ARGUMENT:
            return given
        factory, what = given, ref.object_
    else:
        from torchtk.core.components import load_object

        try:
            factory = load_object(ref.import_)
        except (Exception, SystemExit) as exc:  # importing runs the module: anything can happen there
            raise UserInputError(f"{path}.import: cannot import {ref.import_!r}: {type(exc).__name__}: {exc}") from exc
        what = repr(ref.import_)
    if not callable(factory):
        returns = "a torch.nn.Module" if kind == "model" else f"the {kind}"
        raise UserInputError(f"{path}.import: {what} is {type(factory).__name__}, not callable; name a function or "
                             f"class that returns {returns}")
    return _call(factory, path, kind, what, dict(ref.params), context)


def _call(factory: Any, path: str, kind: str, what: str, params: dict[str, Any], context: dict[str, Any]) -> Any:
    import inspect

    first = FIRST_ARGUMENT.get(kind)
    args = (context[first],) if first is not None else ()
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature (some builtins): only the params
        accepted = {}
    params.update({name: value for name, value in context.items() if name != first and name in accepted
                   and name not in params})
    try:
        inspect.signature(factory).bind(*args, **params)
    except TypeError as exc:
        raise UserInputError(f"{path}.params: {what.strip(chr(39))} does not accept these params: {exc}") from None
    except ValueError:  # no signature (builtins): let the call decide
        pass
    try:
        return factory(*args, **params)
    except UserInputError:
        raise
    except Exception as exc:
        raise UserInputError(f"{path}: building {kind} {what} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # as assembly.input_errors says it: tk must not end as a success
        raise UserInputError(f"{path}: building {kind} {what} failed: it called sys.exit({exc.code!r})") from exc


def needs_metric(scheduler: Any) -> bool:
    """Whether a scheduler no catalog entry describes steps on a logged value: its
    ``step`` takes a required argument (``ReduceLROnPlateau.step(metrics)``)."""
    import inspect

    try:
        parameters = inspect.signature(scheduler.step).parameters.values()
    except (AttributeError, TypeError, ValueError):
        return False
    return any(p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in parameters)


def object_placeholder(value: Any) -> str:
    """How ``spec.json`` records an object given from Python: ``<python object: my_mod.focal>``."""
    import functools

    def qualified(item: Any) -> str:
        named = item if hasattr(item, "__qualname__") else type(item)
        return f"{getattr(named, '__module__', '?')}.{getattr(named, '__qualname__', type(item).__name__)}"

    text = f"functools.partial({qualified(value.func)})" if isinstance(value, functools.partial) else qualified(value)
    return f"<python object: {text.replace('<', '').replace('>', '')}>"


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
