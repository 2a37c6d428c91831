"""What may change when a run is resumed: the spec's fingerprint, and where two differ.

A checkpoint stores the fingerprint of the spec it was trained with; ``--resume``
refuses a spec whose fingerprint differs, naming the spec paths, except for the
settings in :data:`RESUMABLE_CHANGES` (more epochs, another device or output dir). A
setting added to torchtk (or to a component's params) after the checkpoint was written
is no difference while it is at its default, so new params never lock old runs out.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from torchtk.core.spec.models import ComponentRef, RunSpec
from torchtk.core.spec.paths import same_path

RESUMABLE_CHANGES = {("trainer", "epochs"), ("trainer", "output_dir"), ("trainer", "progress"),
                     ("trainer", "log_every_n_steps"), ("trainer", "device"), ("description",),
                     ("trainer", "val_every_n_epochs"), ("trainer", "keep_dev_run"),
                     ("plugins",), ("notes",),  # plugin files may be fixed; their components still compare
                     ("trainer", "compile"), ("trainer", "channels_last"), ("trainer", "tf32")}  # speed only
_MISSING = object()  # a key the saved fingerprint does not have


def spec_fingerprint(spec: RunSpec) -> dict[str, Any]:
    """The parts of a spec that must not change when a run is resumed."""
    data = spec.model_dump(mode="json")
    for path in RESUMABLE_CHANGES:
        node = data
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return data


def _field_defaults(model: BaseModel, prefix: str) -> dict[str, Any]:
    """``{"prefix.field": default}`` for every field of ``model`` that has a default,
    and for the fields of the spec models nested in it (``trainer``, ``data.transforms``)."""
    found: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        key = info.serialization_alias or info.alias or name
        path = f"{prefix}.{key}" if prefix else key
        value = getattr(model, name)
        if isinstance(value, BaseModel) and not isinstance(value, ComponentRef):
            found.update(_field_defaults(value, path))
        elif not info.is_required():
            found[path] = to_jsonable_python(info.get_default(call_default_factory=True))
    return found


def spec_defaults(resolved: Any) -> dict[str, Any]:
    """The default of every setting a resolved spec holds, by spec path
    (``trainer.fast_dev_run``, ``scheduler[0].params.last_epoch``): what a setting that
    did not exist when a checkpoint was written is taken to have been."""
    found = _field_defaults(resolved.spec, "")
    found.update(_field_defaults(resolved.spec.data, "data"))
    for entry in resolved.entries:
        found.update(_field_defaults(entry.ref, entry.path))  # ref-level settings (a metric's ``train``)
        if entry.params is not None:
            found.update(_field_defaults(entry.params, f"{entry.path}.params"))
    return found


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: ``1`` (one batch) is not ``1.0`` (all of them)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def spec_differences(saved: Any, current: Any, prefix: str = "", defaults: dict[str, Any] | None = None,
                     paths: frozenset[str] = frozenset()) -> list[str]:
    """Spec paths where two fingerprints differ. A setting the saved fingerprint does not
    have (added to torchtk after the checkpoint was written) differs only when its current
    value is not its default in ``defaults`` (see :func:`spec_defaults`). Settings in
    ``paths`` (see :func:`~torchtk.core.spec.paths.path_settings`) are compared by the
    file they name (:func:`~torchtk.core.spec.paths.same_path`): relative or absolute,
    ``data`` or ``./data/``, the same folder is no difference."""
    defaults = defaults or {}
    if prefix in paths and isinstance(saved, str) and isinstance(current, str):
        return [] if same_path(saved, current) else [prefix]
    if saved is _MISSING and prefix in defaults and _same(current, defaults[prefix]):
        return []
    if saved is _MISSING and isinstance(current, dict):
        saved = {}
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(saved.keys() | current.keys()):
            path = f"{prefix}.{key}" if prefix else key
            found += spec_differences(saved.get(key, _MISSING), current.get(key, _MISSING), path, defaults, paths)
        return found
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [d for i, (a, b) in enumerate(zip(saved, current))
                for d in spec_differences(a, b, f"{prefix}[{i}]", defaults, paths)]
    if saved is _MISSING or current is _MISSING:
        return [prefix or "(root)"]
    return [] if _same(saved, current) else [prefix or "(root)"]


def path_notes(saved: Any, differences: list[str], paths: frozenset[str]) -> str:
    """For differing path settings, the files the run was started with: ``" (the run read
    data.params.train from /old/data/train)"``, so a moved folder is recognisable."""
    notes = [f"{path} from {value}" for path in differences if path in paths
             for value in [_value_at(saved, path)] if isinstance(value, str)]
    return f" (the run read {', '.join(notes)})" if notes else ""


def _value_at(data: Any, path: str) -> Any:
    from torchtk.core.spec.problems import split_path

    for part in split_path(path):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data
