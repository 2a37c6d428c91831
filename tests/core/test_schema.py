"""``tk schema`` for editors: a valid JSON Schema, discriminated by ``name`` into one branch
per installed component (plugins' included), that the bundled specs satisfy and that flags
a misspelt param at its path; ``"$schema"`` in a spec is for editors and ignored by the run."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from pydantic import Field

import torchtk
from torchtk import Component, Params, hookimpl
from torchtk.core.spec import run_spec_schema
from torchtk.core.spec.schema import component_branches
from torchtk.testing import registry_with

jsonschema = pytest.importorskip("jsonschema")
from jsonschema.exceptions import best_match  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "torchtk" / "examples").rglob("*.json"))


@pytest.fixture(scope="module")
def schema():
    return run_spec_schema()


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_is_valid_under_the_json_schema_metaschema(schema):
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    assert list(meta.iter_errors(schema)) == []
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_bundled_example_validates(validator, path):
    assert [e.message for e in validator.iter_errors(json.loads(path.read_text()))] == []


@pytest.mark.parametrize("slot, value, at, message", [
    ("optimizer", {"name": "adam", "params": {"lrr": 0.01}}, ["optimizer", "params"],
     "Additional properties are not allowed ('lrr' was unexpected)"),
    ("optimizer", {"name": "adam", "params": {"lr": "0.01"}}, ["optimizer", "params", "lr"],
     "'0.01' is not of type 'number'"),
    ("callbacks", [{"name": "grad_clip", "params": {"max_nrom": 20}}], ["callbacks", 0, "params"],
     "Additional properties are not allowed ('max_nrom' was unexpected)"),
])
def test_a_misspelt_param_is_one_error_at_its_path(validator, slot, value, at, message):
    spec = json.loads((ROOT / "torchtk" / "examples" / "rings.json").read_text())
    spec[slot] = value
    error = best_match(validator.iter_errors(spec))
    assert (list(error.absolute_path), error.message) == (at, message)


def test_a_misspelt_slot_field_is_flagged_at_the_reference(validator):
    """Beside params, the slot's own fields (a loss term's weight): the error is at the
    term, where the branch for its name says which key was unexpected."""
    spec = json.loads((ROOT / "torchtk" / "examples" / "rings.json").read_text())
    spec["loss"] = [{"name": "focal", "params": {"gamma": 2.0}, "wieght": 1}]
    [error] = validator.iter_errors(spec)
    found = [e for e in _descendants(error) if "wieght" in e.message and "not allowed" in e.message]
    assert [(list(e.absolute_path), e.message) for e in found] == [
        (["loss", 0], "Additional properties are not allowed ('wieght' was unexpected)")]  # the focal branch only


def _descendants(error):
    for child in error.context:
        yield child
        yield from _descendants(child)


def test_each_kind_is_a_union_discriminated_by_name(schema):
    defs = schema["$defs"]
    shorthand, as_object = defs["optimizer_ref"]["anyOf"]
    assert as_object["if"] == {"required": ["import"]} and as_object["then"]["required"] == ["import"]
    named = as_object["else"]
    assert "adam" in shorthand["anyOf"][0]["enum"]
    assert named["required"] == ["name"] and "adam" in named["properties"]["name"]["anyOf"][0]["enum"]
    branches = {b["title"]: b for b in component_branches(schema, "optimizer")}
    assert set(branches) == {f"optimizer {name}" for name in torchtk.registry.names("optimizer")}
    [adam_if] = [b for b in named["allOf"] if b["then"] == {"$ref": "#/$defs/optimizer.adam"}]
    assert adam_if["if"]["properties"]["name"]["anyOf"][0]["enum"][0] == "adam"
    assert defs["optimizer.adam"]["properties"]["params"]["properties"]["lr"]["type"] == "number"


def test_a_plugins_components_are_branches_with_their_own_params(small_spec):
    module = types.ModuleType("torchtk_schema_demo")

    class ScaledParams(Params):
        """A scaled squared error."""
        alpha: float = Field(1.0, ge=0, description="The scale.")

    @hookimpl
    def register_components(register):
        register(Component("loss", "scaled_mse", "A scaled squared error.", params=ScaledParams, aliases=("smse",)))

    module.register_components = register_components
    schema = run_spec_schema(registry_with(module))
    validator = jsonschema.Draft202012Validator(schema)
    assert schema["$defs"]["loss.scaled_mse"]["properties"]["params"]["properties"]["alpha"]["minimum"] == 0
    small_spec["loss"] = [{"name": "smse", "params": {"alpha": 0.5}}]
    assert list(validator.iter_errors(small_spec)) == []
    small_spec["loss"] = [{"name": "torchtk_schema_demo::scaled_mse", "params": {"alpah": 0.5}}]
    error = best_match(validator.iter_errors(small_spec))
    assert error.message == "Additional properties are not allowed ('alpah' was unexpected)"
    assert "scaled_mse" not in json.dumps(run_spec_schema())  # the process-wide registry has no such plugin


def test_schema_key_is_allowed_ignored_by_the_run_and_not_in_the_fingerprint(small_spec, spec_file, tk, tmp_path):
    small_spec["$schema"] = "./torchtk.schema.json"
    small_spec["trainer"]["epochs"] = 1
    assert "$schema" not in torchtk.load_spec(small_spec).model_dump(mode="json")
    path = spec_file(small_spec)
    assert tk("validate", str(path)).exit_code == 0
    (tmp_path / "torchtk.schema.json").write_text(tk("schema").stdout)  # what the README tells users to do
    on_disk = json.loads((tmp_path / "torchtk.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(on_disk).iter_errors(small_spec)) == []
    result = torchtk.train(str(path))
    assert "$schema" not in json.loads((result.run_dir / "spec.json").read_text())
    small_spec["$schema"] = "https://example.org/another.schema.json"  # a resume that changed only $schema
    small_spec["trainer"]["epochs"] = 2
    resumed = torchtk.train(str(spec_file(small_spec)), resume=result.run_dir)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
