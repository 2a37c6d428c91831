"""``tk schema``: the JSON Schema of the run spec, with every installed component.

Pydantic's own schema of :class:`~torchtk.core.spec.models.RunSpec` knows only that a
component's params are an object; here each slot is narrowed to the components the
registry has, each with its own params schema, so editors can complete and check specs.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from torchtk.core.errors import TorchtkError
from torchtk.core.spec.models import IMPORT_PATH, SLOTS, RunSpec, Slot

if TYPE_CHECKING:
    from torchtk.core.registry import Registry


def run_spec_schema(registry: Registry | None = None) -> dict[str, Any]:
    """JSON Schema of the run spec in which every component slot accepts exactly the
    installed components, each with its own params schema (``tk schema``).

    Each kind gets a ``$defs`` entry ``<kind>_ref``: one alternative per component
    (``name`` fixed to its name or aliases, ``params`` its params model) plus the bare
    string shorthand. Editors that read JSON Schema can then complete and check specs.
    """
    if registry is None:
        from torchtk.core.registry import get_registry

        registry = get_registry()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **RunSpec.model_json_schema()}
    defs = schema.setdefault("$defs", {})
    for slot in SLOTS:
        defs[f"{slot.kind}_ref"] = _ref_schema(slot, registry, defs)
        ref = {"$ref": f"#/$defs/{slot.kind}_ref"}
        properties, name = _slot_properties(schema, defs, slot.field)
        description = properties[name].get("description", "")
        if slot.one_or_many:
            properties[name] = {"anyOf": [ref, {"type": "array", "items": ref}], "description": description}
        elif slot.many:
            properties[name] = {"type": "array", "items": ref, "description": description}
        else:
            properties[name] = {**ref, "description": description}
    return schema


def _slot_properties(schema: dict[str, Any], defs: dict[str, Any], field: str) -> tuple[dict[str, Any], str]:
    """The ``properties`` object holding ``field``, and the key in it: a dotted field
    (``data.transforms.train``) lives in the definitions of the nested models."""
    *outer, name = field.split(".")
    properties, model = schema["properties"], RunSpec
    for part in outer:
        model = model.model_fields[part].annotation
        properties = defs[model.__name__]["properties"]
    return properties, name


def _ref_schema(slot: Slot, registry: Registry, defs: dict[str, Any]) -> dict[str, Any]:
    """One reference in ``slot``: a bare name, or an object per installed component."""
    slot_fields = {k: v for k, v in defs[slot.ref_model.__name__]["properties"].items()
                   if k not in ("name", "params", "import", "object")}
    names: list[str] = []
    alternatives: list[dict[str, Any]] = []
    for component in registry.components(slot.kind):
        try:
            params_model = registry.params_model(component)
        except TorchtkError:  # a broken plugin's component is left out, with a warning
            continue
        component_names = [component.name, *component.aliases]
        names += component_names
        alternatives.append({
            "type": "object",
            "title": f"{slot.kind} {component.name}",
            "description": component.summary,
            "properties": {"name": _name_schema(component_names),
                           "params": _hoist_defs(params_model.model_json_schema(), defs,
                                                 f"{slot.kind}.{component.name}."),
                           **slot_fields},
            "required": ["name"],
            "additionalProperties": False,
        })
    alternatives.append({"type": "object", "title": f"{slot.kind} by import path",  # any slot: torchtk.core.imported
                         "properties": {"import": {"type": "string", "pattern": IMPORT_PATH,
                                                   "description": "package.module:factory, called with the params."},
                                        "params": {"type": "object"}, **slot_fields},
                         "required": ["import"], "additionalProperties": False})
    return {"anyOf": [{"type": "string", **_name_schema(names)}, *alternatives]}


def _name_schema(names: list[str]) -> dict[str, Any]:
    """A component name: one of ``names``, or ``plugin::name`` picking a provider."""
    scoped = "^[^:]+::(" + "|".join(re.escape(n) for n in names) + ")$"
    return {"anyOf": [{"enum": names}, {"type": "string", "pattern": scoped}]}


def _hoist_defs(schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Move a nested schema's ``$defs`` into the top-level ones under unique names."""
    nested = schema.pop("$defs", {})
    if not nested:
        return schema
    text = json.dumps(schema)
    for name, definition in nested.items():
        text = text.replace(f'"#/$defs/{name}"', f'"#/$defs/{prefix}{name}"')
        defs[prefix + name] = json.loads(json.dumps(definition).replace('"#/$defs/', f'"#/$defs/{prefix}'))
    return json.loads(text)
