"""Relative paths in a spec: which params are paths, and what they are relative to.

A params field marked with :class:`~torchtk.core.components.PathParam` (a data folder,
a weights file) holds a path the run reads. When a spec is resolved, every such
relative path becomes absolute:

- written in a spec file: relative to the folder of that file (the path as named, not
  with its symbolic links resolved), so a spec and its data travel together;
- given with ``--set``: relative to the current directory, where it was typed;
- in a dict or ``RunSpec`` from Python: relative to the current directory.

The resolved spec, and so a run's ``spec.json`` and its checkpoints' fingerprint, hold
the absolute paths: ``tk train RUN/spec.json --resume RUN`` reads the same files from
anywhere. :func:`same_path` lets a resume compare paths by what they point to, so a
path written relative in an older checkpoint (relative then to the working directory)
or through another spelling of the same folder is no difference.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Sequence, get_args, get_origin

from pydantic import BaseModel

from torchtk.core.components import PathParam
from torchtk.core.spec.problems import format_loc, split_path

if TYPE_CHECKING:
    from torchtk.core.spec.resolve import Entry

Location = tuple[Any, ...]  # a spec path as parts: ("data", "params", "train")


def _marker(annotation: Any) -> PathParam | None:
    """The ``PathParam`` in a field's annotation, also inside ``Optional``/``list``."""
    if get_origin(annotation) is Annotated:
        found = next((m for m in annotation.__metadata__ if isinstance(m, PathParam)), None)
        return found or _marker(get_args(annotation)[0])
    return next((m for m in map(_marker, get_args(annotation)) if m is not None), None)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """Params models nested in an annotation (``list[Stage]``, ``Optional[Inner]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def path_values(model: type[BaseModel], data: Any, prefix: Location = ()) -> Iterator[tuple[Location, PathParam]]:
    """``(location, marker)`` of every string in ``data`` (a params dict, as JSON) that a
    ``PathParam`` field of ``model`` holds, nested params models included."""
    if not isinstance(data, dict):
        return
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        value, here = data[key], (*prefix, key)
        marker = _marker(info.annotation) or next((m for m in info.metadata if isinstance(m, PathParam)), None)
        if marker is not None:
            if isinstance(value, str):
                yield here, marker
            elif isinstance(value, list):
                yield from (((*here, i), marker) for i, item in enumerate(value) if isinstance(item, str))
            continue
        nested = _models(info.annotation)
        if len(nested) == 1:
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            for index, item in items:
                yield from path_values(nested[0], item, here if index is None else (*here, index))


def is_relative(value: str, marker: PathParam) -> bool:
    """A value to resolve: not empty, not absolute, not ``~``, not a name (``DEFAULT``)."""
    if not value or os.path.isabs(value) or value.startswith("~"):
        return False
    return not (marker.names is not None and re.fullmatch(marker.names, value))


def absolute_entries(entries: Sequence[Entry], registry: Any, relative_to: Path | None,
                     typed: Sequence[Location] = ()) -> list[Entry]:
    """The entries with every relative path made absolute: against ``relative_to`` (the
    spec file's folder; ``None``: the current directory), or the current directory for a
    value under one of the ``typed`` locations (what ``--set`` gave)."""
    cwd = Path.cwd()
    base = cwd if relative_to is None else relative_to
    resolved = []
    for entry in entries:
        if entry.params is None or entry.component is None:
            resolved.append(entry)
            continue
        data, changed = entry.ref.params, False
        for location, marker in list(path_values(type(entry.params), data)):
            parent = _at(data, location[:-1])
            value = parent[location[-1]]
            if not is_relative(value, marker):
                continue
            full = (*split_path(entry.path), "params", *location)
            root = cwd if any(full[: len(t)] == tuple(t) for t in typed) else base
            parent[location[-1]], changed = str(root / value), True
        if changed:
            params = registry.validate_params(entry.component, data)
            entry.ref.params = params.model_dump(mode="json")
            entry = replace(entry, params=params)
        resolved.append(entry)
    return resolved


def _at(data: Any, location: Location) -> Any:
    for part in location:
        data = data[part]
    return data


def path_settings(resolved: Any) -> frozenset[str]:
    """The spec paths (``data.params.train``, ``model.params.weights``) that hold paths."""
    if resolved is None:
        return frozenset()
    return frozenset(format_loc((*split_path(entry.path), "params", *location))
                     for entry in resolved.entries if entry.params is not None
                     for location, _ in path_values(type(entry.params), entry.ref.params))


def same_path(saved: Any, current: Any) -> bool:
    """Whether two path settings name the same file: both made absolute (a relative one
    against the current directory, as torchtk read it before paths became relative to
    the spec file), ``~`` expanded, symbolic links resolved."""
    if not (isinstance(saved, str) and isinstance(current, str)):
        return saved == current
    return _real(saved) == _real(current)


def _real(value: str) -> str:
    return os.path.realpath(os.path.expanduser(value)) if value else value
