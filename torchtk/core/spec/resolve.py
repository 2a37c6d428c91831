"""The second validation pass, and the whole road from a source to a resolved spec.

The first pass (:class:`~torchtk.core.spec.models.RunSpec`) checks the spec's shape.
The second resolves every component reference to one component of the registry it is
given and validates its params against that component's own model, with the registry
in pydantic's validation context (``info.context["registry"]``) so params that name
other components (a scheduler inside ``warmup``) resolve them in the same registry.
Its result, :class:`ResolvedSpec`, holds one :class:`Entry` per reference: what the
engine builds from, without resolving or validating anything again.

:func:`load_resolved` reads, overrides and validates; each problem then names its spec
path, its ``file:line:column`` when it comes from a file, or the ``--set`` that caused it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import BaseModel, ValidationError

from torchtk.core.components import Component
from torchtk.core.errors import SpecError, TorchtkError, UnknownComponentError, UserInputError
from torchtk.core.spec.limits import data_problems
from torchtk.core.spec.loading import read_spec_source
from torchtk.core.spec.models import ONE_OR_MANY, SLOT_BY_FIELD, ComponentRef, PluginFile, PluginModule, RunSpec
from torchtk.core.spec.overrides import apply_override, blame_overrides
from torchtk.core.spec.paths import absolute_entries
from torchtk.core.spec.problems import UNKNOWN_KEY, format_loc, problems_from, split_path
from torchtk.core.spec.sourcemap import Position, SourceMap

if TYPE_CHECKING:
    from torchtk.core.registry import Registry

@dataclass(frozen=True)
class Entry:
    """One component reference of a resolved spec."""

    path: str  # spec path: "model", "data", "loss[0]", "scheduler[1]", "callbacks[0]"
    kind: str  # "model", "dataset", "loss", ...
    ref: ComponentRef  # the spec's ref: canonical name, full params (what spec.json shows)
    component: Component | None  # None for {"import": ...}, {"object": ...} or a deferred name
    params: BaseModel | None  # the validated params model instance; None without a component
    deferred: str = ""  # why a name was not resolved: a plugin of the spec's that tk validate did not import

    @property
    def field(self) -> str:
        """The spec field the entry is in: ``loss`` for ``loss[1]``."""
        return self.path.split("[", 1)[0]


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec, the registry that resolved it, and its entries in build order."""

    spec: RunSpec
    registry: Registry
    entries: tuple[Entry, ...]
    objects: dict[str, Any] = field(default_factory=dict)  # spec path -> object given from Python
    plugins: tuple[Any, ...] = ()  # the plugins the run names (torchtk.core.user_plugins.NamedPlugin)

    def entry(self, path: str) -> Entry:
        """The entry at a spec path, such as ``"optimizer"`` or ``"loss[1]"``."""
        for entry in self.entries:
            if entry.path == path:
                return entry
        raise KeyError(f"no component at spec path {path!r}; the spec has {', '.join(e.path for e in self.entries)}")

    def slot(self, field: str) -> list[Entry]:
        """The entries of one slot, in the spec's order: ``slot("loss")`` -> ``[loss[0], loss[1]]``."""
        if field not in SLOT_BY_FIELD:
            raise KeyError(f"{field!r} is not a component slot; slots: {', '.join(SLOT_BY_FIELD)}")
        return [entry for entry in self.entries if entry.field == field]


def resolve(spec: RunSpec, registry: Registry | None = None, label: str = "spec", relative_to: Path | None = None,
            typed: Sequence[tuple[Any, ...]] = (), objects: dict[str, Any] | None = None,
            plugins: Sequence[str] = (), import_plugins: bool = True) -> ResolvedSpec:
    """Second pass: load the plugins the spec names, resolve every name to one component
    and validate its params.

    The spec is completed in place: names become canonical (aliases resolved) and
    ``params`` become the full validated params, defaults included, so the saved
    ``spec.json`` is explicit. Pass a copy to keep the original. Relative paths in
    params marked as paths become absolute (:mod:`torchtk.core.spec.paths`): against
    ``relative_to`` (a spec file's folder; default the current directory), and against
    the current directory under the ``typed`` locations (the ``--set`` ones).

    ``plugins`` (``-p``) are loaded with the spec's own ``plugins``; with
    ``import_plugins=False`` (``tk validate``, ``load_spec``) the spec's are found but
    not imported, and a name nothing loaded provides is ``deferred``, not an error.
    ``objects`` are the objects given from Python, by spec path (``{"loss[0]": fn}``).
    """
    if registry is None:
        from torchtk.core.registry import get_registry

        registry = get_registry()
    named, pending = _plugins(spec, registry, relative_to, plugins, import_plugins)
    _ = registry.providers  # a fatal plugin error (strict mode) surfaces once, not once per component
    objects = dict(objects or {})
    modules = frozenset(p.module for p in named)
    entries: list[Entry] = []
    problems: list[tuple[str, str]] = []
    for path, kind, ref in spec.component_refs():
        entry, found = _resolve_ref(registry, path, kind, ref, objects, modules, pending)
        problems += found
        if entry is not None:
            entries.append(entry)
    if problems:
        raise SpecError(problems, label)
    spec.notes = [NOT_RERUNNABLE] if objects else [note for note in spec.notes if note != NOT_RERUNNABLE]
    return ResolvedSpec(spec, registry, tuple(absolute_entries(entries, registry, relative_to, typed)), objects,
                        tuple(named))


NOT_RERUNNABLE = ("Python objects were given to this run ({\"object\": ...}): it cannot be re-run from this spec.json "
                  "alone; pass the same objects again (torchtk.train(spec, loss=...)) or name components instead")


def _plugins(spec: RunSpec, registry: Registry, folder: Path | None, extra: Sequence[str],
             import_plugins: bool) -> tuple[list[Any], list[Any]]:
    """The spec's plugins and ``extra`` ones found (then recorded in ``spec.plugins``) and
    loaded; returns them all, and those left unimported."""
    from torchtk.core.user_plugins import load, prepare

    given = prepare(list(extra), None, where="-p")
    named, seen = [], set()
    for plugin in [*prepare(spec.plugins, folder), *given]:
        if plugin.target not in seen:
            seen.add(plugin.target)
            named.append(plugin)
    spec.plugins = [PluginFile(**r) if "sha256" in r else PluginModule(**r) for r in (p.record() for p in named)]
    on_command_line = {plugin.target for plugin in given}  # named by the user: imported even by tk validate
    loading = [p for p in named if import_plugins or p.target in on_command_line]
    load(registry, loading)
    return named, [p for p in named if p not in loading]


def _resolve_ref(registry: Registry, path: str, kind: str, ref: ComponentRef, objects: dict[str, Any],
                 modules: frozenset[str], pending: list[Any]) -> tuple[Entry | None, list[tuple[str, str]]]:
    from torchtk.core.registry import SCOPE_SEPARATOR  # already imported: a registry exists

    if ref.import_ is not None:  # looked up, never imported (torchtk.core.imported)
        from torchtk.core.imported import check_reference

        problems = check_reference(f"{path}.import", ref.import_, modules)
        return (None if problems else Entry(path, kind, ref, None, None)), problems
    if ref.object_ is not None:
        if path not in objects:
            return None, [(path, f"{ref.object_} was an object given from Python to the run that wrote this spec; "
                                 f"it cannot be re-run from the spec alone: give the object again "
                                 f"(torchtk.train(spec, {path.split('[')[0].split('.')[0]}=...)), or name a "
                                 f"component or an import instead")]
        return Entry(path, kind, ref, None, None), []
    assert ref.name is not None
    try:
        component = registry.resolve(kind, ref.name)
        model = registry.params_model(component)
    except TorchtkError as exc:
        if pending and isinstance(exc, UnknownComponentError):
            where = ", ".join(f"{p.where} {p.file or p.module}" for p in pending)
            return Entry(path, kind, ref, None, None, deferred=f"not checked: no installed plugin provides "
                                                                 f"{kind} {ref.name!r}, and the spec's plugins "
                                                                 f"were not imported ({where})"), []
        return None, [(f"{path}.name", str(exc))]
    try:
        params = registry.validate_params(component, ref.params)
    except ValidationError as exc:
        return None, problems_from(exc, (*split_path(path), "params"), model)
    ref.name = ref.name if SCOPE_SEPARATOR in ref.name else component.name
    ref.params = params.model_dump(mode="json")
    return Entry(path, kind, ref, component, params), []


# -- from a source to a resolved spec ---------------------------------------------------------


def load_resolved(source: Any, overrides: list[str] | None = None, registry: Registry | None = None,
                  plugins: Sequence[str] = (), objects: dict[str, Any] | None = None,
                  import_plugins: bool = True) -> ResolvedSpec:
    """Read, override and fully validate a spec: a path, a bundled example, a dict or a
    RunSpec. ``plugins`` are ``-p`` ones (paths against the current directory);
    ``objects`` the components given from Python by field (``{"loss": fn}``), and a dict
    source may hold objects in its slots too (:mod:`torchtk.core.spec.objects`)."""
    data, label, where, found = _raw_data(source, objects or {})
    override_paths = [apply_override(data, item) for item in overrides or ()]
    folder = None if isinstance(source, (dict, RunSpec)) else Path(label).absolute().parent  # of the spec file
    try:
        try:
            _check_data(data, label)  # JSON data, finite numbers, bounded depth: before anything recurses
            spec = RunSpec.model_validate(data)
        except ValidationError as exc:
            raise SpecError(problems_from(exc, (), RunSpec), label) from None
        return resolve(spec, registry, label, relative_to=folder, typed=override_paths, objects=found,
                       plugins=plugins, import_plugins=import_plugins)
    except SpecError as exc:
        overridden = set(override_paths)
        located = SpecError(exc.problems, exc.source, [_position(where, path, message, overridden)
                                                       for path, message in exc.problems])
        raise blame_overrides(located, override_paths, overrides) from None
    except RecursionError:  # a validator that recurses per level; data_problems bounds the levels, so a safety net
        raise UserInputError(f"{label}: the spec is nested too deeply to validate") from None


def load_spec(source: Any, overrides: list[str] | None = None, registry: Registry | None = None,
              plugins: Sequence[str] = ()) -> RunSpec:
    """Read, override and fully validate a spec: a path, a bundled example, a dict or a
    RunSpec. Imports nothing the spec names: its ``plugins`` are found, not imported
    (``plugins=`` ones are, as ``-p`` ones are)."""
    return load_resolved(source, overrides, registry, plugins=plugins, import_plugins=False).spec


def _raw_data(source: Any, objects: dict[str, Any]) -> tuple[dict[str, Any], str, SourceMap | None, dict[str, Any]]:
    """The spec's raw data (a copy), its label in messages, positions if it is a file, and
    the Python objects given in it or in ``objects`` (by spec path; placeholders in the data)."""
    from torchtk.core.spec.objects import take_objects

    if isinstance(source, RunSpec):
        data, label, where = source.model_dump(), "spec", None
    elif isinstance(source, dict):
        data, label, where = dict(source), "spec", None
    else:
        data, label, where = read_spec_source(source)
    found = take_objects(data, objects)
    if isinstance(source, dict):
        _check_data(data, "spec")  # json.dumps below would recurse into anything
        data = json.loads(json.dumps(data))
    return data, label, where, found


def _check_data(data: dict[str, Any], label: str) -> None:
    """:func:`~torchtk.core.spec.limits.data_problems` at spec paths: a single ref where
    a list may be is ``loss[0]``, as validation (and ``--set``) name it."""
    problems = []
    for path, message in data_problems(data):
        if len(path) > 1 and path[0] in ONE_OR_MANY and isinstance(data.get(path[0]), dict):
            path = (path[0], 0, *path[1:])
        problems.append((format_loc(path), message))
    if problems:
        raise SpecError(problems, label)


def _position(where: SourceMap | None, path: str, message: str, overridden: set[tuple[Any, ...]]) -> Position | None:
    """Where in the file the problem at ``path`` is: the offending value, the key for an
    unknown key, the enclosing object for a missing one; none for a value ``--set`` gave
    (``overridden``: the paths of the ``--set`` options; a few set lookups per problem,
    so thousands of options stay linear)."""
    parts = tuple(split_path(path))
    if where is None or any(parts[:end] in overridden for end in range(1, len(parts) + 1)):
        return None
    field = parts[0] if parts else None
    if field in ONE_OR_MANY and parts[1:2] == (0,) and (field, 0) not in where.values:
        parts = (field, *parts[2:])  # one ref given where a list may be: loss[0].x is the file's loss.x
    return where.find(parts, key=message.startswith(UNKNOWN_KEY))
