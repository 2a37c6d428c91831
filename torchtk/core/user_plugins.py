"""Plugins a run names: the spec's ``"plugins"`` and ``tk ... -p``, files or modules.

``"plugins": ["./my_losses.py", "my_pkg.tricks"]`` loads, for that run, a Python file
(a path: relative to the spec file's folder, or to the current directory for ``-p``)
or a module (a dotted name, imported as ``import`` would). Each is registered in the
registry's :class:`~torchtk.core.plugins.PluginHost` exactly as an entry point is, so
its ``@hookimpl`` functions declare and build components; a file without hooks is
still useful: its functions are then reachable as ``{"import": "my_losses:focal"}``.

A file is imported under its stem (``my_losses``), with its folder appended to
``sys.path`` so that it can import the files next to it, as pytest imports a
``conftest.py``. Loading is explicit and reported: :func:`prepare` finds each plugin
without importing it (what ``tk validate`` lists), :func:`load` imports it, and a
plugin that cannot be loaded (missing, a syntax error, an import that raises) is one
input error naming the file (exit 2), never a warning that lets the run go on
without it. ``spec.json`` records each plugin as :meth:`NamedPlugin.record`: a file
by its absolute path and sha256, a module by name, version and file.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torchtk.core.errors import UserInputError

MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# module name -> the plugin file this process imported under it: a file edited since (a
# notebook) or another file of that name (another spec's folder) is imported again
_FILES: dict[str, tuple[str, str]] = {}  # module name -> (file, sha256)


@dataclass(frozen=True)
class NamedPlugin:
    """One plugin a run names, found but not yet imported."""

    where: str  # "plugins[0]" (the spec) or "-p ./x.py" (the command line)
    module: str  # the module name it is imported as
    file: str = ""  # a file plugin: its absolute path; a module: its origin, if found
    sha256: str = ""  # a file plugin's content hash
    version: str = ""  # a module's distribution version, if it has one

    @property
    def is_file(self) -> bool:
        return bool(self.sha256)

    @property
    def target(self) -> str:
        """What it loads: the file's path, or the module's name."""
        return self.file if self.is_file else self.module

    def record(self) -> dict[str, str]:
        """What ``spec.json`` keeps of it (also accepted as a ``plugins`` entry)."""
        if self.is_file:
            return {"file": self.file, "sha256": self.sha256}
        return {"module": self.module, **({"version": self.version} if self.version else {}),
                **({"file": self.file} if self.file else {})}

    def described(self) -> dict[str, str]:
        """Its line of the ``tk validate`` report (``imports``)."""
        return {"path": self.where, "module": self.module, "object": self.file or self.module,
                "plugin": "file" if self.is_file else "module"}


def is_path(text: str) -> bool:
    """A plugin entry is a file when it looks like one (``./x.py``, ``x.py``, ``a/b``), else a module name."""
    return text.endswith(".py") or "/" in text or "\\" in text or text.startswith(".")


def prepare(entries: Sequence[Any], folder: Path | None, where: str = "plugins") -> list[NamedPlugin]:
    """Find each entry (a string or a ``spec.json`` record) without importing anything;
    relative paths against ``folder`` (the spec file's; ``None``: the current directory)."""
    found = []
    for index, entry in enumerate(entries):
        if hasattr(entry, "model_dump"):  # a spec.json record, validated
            entry = entry.model_dump()
        elif isinstance(entry, os.PathLike):  # torchtk.train(..., plugins=[Path("my_losses.py")])
            entry = os.fspath(entry)
        label = f"{where}[{index}]" if where == "plugins" else f"{where} {entry}"
        if isinstance(entry, dict):
            text, recorded = entry.get("file") if "sha256" in entry else entry.get("module"), entry
        else:
            text, recorded = entry, {}
        found.append(_file(label, text, folder, recorded) if "sha256" in recorded or is_path(text)
                     else _module(label, text, recorded))
    return found


def _file(label: str, text: str, folder: Path | None, recorded: dict[str, Any]) -> NamedPlugin:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (folder or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        base = "" if Path(text).is_absolute() else f" (relative to {folder or Path.cwd()})"
        against = "the spec file's folder" if folder is not None else "the current directory"
        raise UserInputError(f"{label}: plugin file {text} not found{base}: {path} is not a file; give a path to "
                             f"a .py file, relative to {against}")
    if path.suffix != ".py":
        raise UserInputError(f"{label}: plugin file {path} is not a .py file; give a Python file or a module name")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if recorded.get("sha256") and recorded["sha256"] != digest:
        warnings.warn(f"{label}: {path} changed since this spec was written (sha256 {recorded['sha256'][:12]} "
                      f"then, {digest[:12]} now); the run uses the file as it is now", UserWarning, stacklevel=3)
    module = re.sub(r"\W", "_", path.stem)
    return NamedPlugin(label, module if not module[:1].isdigit() else f"_{module}", str(path), digest)


def _module(label: str, text: str, recorded: dict[str, Any]) -> NamedPlugin:
    from torchtk.core.imported import find_module, module_origin

    if not isinstance(text, str) or not MODULE_NAME.fullmatch(text):
        raise UserInputError(f"{label}: {text!r} is neither a .py file nor a module name (package.module)")
    if not find_module(text):
        raise UserInputError(f"{label}: no module named {text!r} on the Python path (sys.path); give an "
                             "importable module, or a path to a .py file (./my_plugin.py)")
    version = _version(text)
    if recorded.get("version") and version and recorded["version"] != version:
        warnings.warn(f"{label}: module {text} is version {version} now, {recorded['version']} when this spec "
                      "was written", UserWarning, stacklevel=3)
    return NamedPlugin(label, text, module_origin(text), version=version)


def _version(module: str) -> str:
    """The version of the distribution that installs ``module``'s top-level package, if any."""
    from importlib import metadata

    top = module.split(".")[0]
    for dist in metadata.packages_distributions().get(top, ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""


def load(registry: Any, plugins: Sequence[NamedPlugin]) -> None:
    """Import each plugin and register it in ``registry``'s host, as an entry point; then
    the catalog is built again with its components. A failure is one input error."""
    host = registry.host
    added = False
    for plugin in plugins:
        known = host.plugins.get(plugin.module)
        if known is not None and known.module == plugin.target and known.version == _version_of(plugin):
            _check_loaded(plugin, known)
            continue
        if known is not None and not (plugin.is_file and known.module in {file for file, _ in _FILES.values()}):
            raise UserInputError(f"{plugin.where}: a plugin named {plugin.module!r} is already loaded from "
                                 f"{known.module}; rename the file")
        with warnings.catch_warnings():  # the host's "failed to load" warning: here it is an error instead
            warnings.simplefilter("ignore")
            info = host.load_named(plugin.module, lambda p=plugin: _import(p), target=plugin.target,
                                   version=_version_of(plugin))
        _check_loaded(plugin, info)
        added = True
    if added:
        registry.refresh()
        broken = [p for p in plugins if host.plugins[p.module].broken]
        for plugin in broken:  # register_components raised
            _check_loaded(plugin, host.plugins[plugin.module])


def _version_of(plugin: NamedPlugin) -> str:
    """What ``tk plugins`` shows as its version: a module's, a file's content hash (12 digits)."""
    return plugin.version or plugin.sha256[:12]


def _check_loaded(plugin: NamedPlugin, info: Any) -> None:
    if info.error is None:
        return
    what = f"plugin file {plugin.file}" if plugin.is_file else f"plugin module {plugin.module}"
    raise UserInputError(f"{plugin.where}: {what} cannot be loaded: {_reason(info.error, plugin.file)}") from None


def _reason(error: BaseException, file: str) -> str:
    """The error, with the plugin file's line where it was raised (a SyntaxError says its own)."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} (line {error.lineno})"
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if file and frame.filename == file]
    return f"{type(error).__name__}: {error}" + (f" (line {lines[-1]})" if lines else "")


def _import(plugin: NamedPlugin) -> Any:
    """Import a module plugin by name, a file plugin from its path under its stem."""
    import importlib
    import importlib.util

    if not plugin.is_file:
        return importlib.import_module(plugin.module)
    existing = sys.modules.get(plugin.module)
    if existing is not None and _FILES.get(plugin.module) == (plugin.file, plugin.sha256):
        return existing  # imported before by this process (another registry): not executed twice
    if existing is not None and plugin.module not in _FILES:  # not ours; ours from another or edited file: replaced
        raise UserInputError(f"{plugin.where}: plugin file {plugin.file} would be imported as {plugin.module!r}, "
                             f"but a module of that name is already imported from "
                             f"{getattr(existing, '__file__', None) or 'a package'}; rename the file")
    folder = str(Path(plugin.file).parent)
    if folder not in sys.path:  # its neighbours import as it does (and DataLoader workers find it)
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(plugin.module, plugin.file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[plugin.module] = module
    _FILES[plugin.module] = (plugin.file, plugin.sha256)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(plugin.module, None)
        _FILES.pop(plugin.module, None)
        raise
    return module
