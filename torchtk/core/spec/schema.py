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

    Each kind gets a ``$defs`` entry ``<kind>_ref``: the bare string shorthand, or an
    object discriminated by ``name`` into one branch per component (``$defs/<kind>.<name>``:
    ``params`` its params model). Editors that read JSON Schema (VS Code) can then
    complete and check specs; ``"$schema"`` in a spec points them at this file.
    """
    if registry is None:
        from torchtk.core.registry import get_registry

        registry = get_registry()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **RunSpec.model_json_schema()}
    defs = schema.setdefault("$defs", {})
    schema["properties"] = {"$schema": {"type": "string", "description": (
        "The JSON Schema an editor checks this spec against (`tk schema > torchtk.schema.json`); "
        "ignored by the run.")}, **schema["properties"]}
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
    """One reference in ``slot``: a bare name, or an object discriminated by its ``name``.

    Each installed component is one branch, ``$defs/<kind>.<name>`` (``name`` fixed to its
    name or aliases, ``params`` its params model, the slot's own fields), chosen by
    ``if name is one of its names then the branch``: a validator (an editor) checks the
    object against that one branch only, so a misspelt param is one error at ``params``,
    not one per installed component.
    """
    slot_fields = {k: v for k, v in defs[slot.ref_model.__name__]["properties"].items()
                   if k not in ("name", "params", "import", "object")}
    names: list[str] = []
    branches: list[dict[str, Any]] = []
    for component in registry.components(slot.kind):
        try:
            params_model = registry.params_model(component)
        except TorchtkError:  # a broken plugin's component is left out, with a warning
            continue
        component_names = [component.name, *component.aliases]
        names += component_names
        key = f"{slot.kind}.{component.name}"
        defs[key] = {
            "type": "object",
            "title": f"{slot.kind} {component.name}",
            "description": component.summary,
            "properties": {"name": _name_schema(component_names),
                           "params": _hoist_defs(params_model.model_json_schema(), defs, f"{key}."),
                           **slot_fields},
            "required": ["name"],
            "additionalProperties": False,
        }
        branches.append({"if": {"properties": {"name": _name_schema(component_names)}, "required": ["name"]},
                         "then": {"$ref": "#/$defs/" + key.replace("~", "~0").replace("/", "~1")}})
    by_name = {"type": "object", "title": f"{slot.kind} by name", "required": ["name"],
               "properties": {"name": _name_schema(names)}, "allOf": branches}
    by_import = {"type": "object", "title": f"{slot.kind} by import path",  # any slot: torchtk.core.imported
                 "properties": {"import": {"type": "string", "pattern": IMPORT_PATH,
                                           "description": "package.module:factory, called with the params."},
                                "params": {"type": "object"}, **slot_fields},
                 "required": ["import"], "additionalProperties": False}
    # an object with "import" is checked as an import only, any other as a name only: one error each
    return {"anyOf": [{"type": "string", **_name_schema(names)},
                      {"type": "object", "if": {"required": ["import"]}, "then": by_import, "else": by_name}]}


def component_branches(schema: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The per-component branches of ``kind`` in a schema from :func:`run_spec_schema`."""
    defs = schema["$defs"]
    named = defs[f"{kind}_ref"]["anyOf"][1]["else"]
    return [defs[branch["then"]["$ref"].removeprefix("#/$defs/").replace("~1", "/").replace("~0", "~")]
            for branch in named["allOf"]]


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
