"""The resolved spec: one explicit entry per component reference, in build order,
resolved against the registry it is given; the slot table everything derives from."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

import torchtk
from torchtk.core.errors import SpecError
from torchtk.core.spec import (
    COMPONENT_SLOTS,
    ONE_OR_MANY,
    SLOTS,
    ComponentRef,
    Entry,
    ResolvedSpec,
    RunSpec,
    load_resolved,
    load_spec,
    resolve,
)


def test_entries_have_paths_kinds_components_and_params_in_build_order(small_spec):
    small_spec["metrics"] = ["acc"]
    resolved = load_resolved(small_spec)
    assert isinstance(resolved, ResolvedSpec) and isinstance(resolved.spec, RunSpec)
    assert resolved.registry is torchtk.registry
    assert [(e.path, e.kind) for e in resolved.entries] == [
        ("model", "model"), ("data", "dataset"), ("loss[0]", "loss"), ("loss[1]", "loss"),
        ("optimizer", "optimizer"), ("scheduler[0]", "scheduler"), ("precision", "precision"),
        ("callbacks[0]", "callback"), ("metrics[0]", "metric")]
    for entry in resolved.entries:
        assert isinstance(entry, Entry)
        assert entry.component is not None and entry.component.kind == entry.kind
        assert entry.component.name == entry.ref.name  # canonical: the alias "acc" became "accuracy"
        assert isinstance(entry.params, BaseModel)
        assert isinstance(entry.params, resolved.registry.params_model(entry.component))
        assert entry.ref.params == entry.params.model_dump(mode="json")  # what spec.json shows
    focal = resolved.entry("loss[0]")
    assert focal.ref is resolved.spec.loss[0] and focal.params.gamma == 2.0 and focal.params.alpha == 0.75
    assert resolved.entry("metrics[0]").ref.name == "accuracy"


def test_slot_and_entry_lookups(small_spec):
    resolved = load_resolved(small_spec)
    assert [e.path for e in resolved.slot("loss")] == ["loss[0]", "loss[1]"]
    assert resolved.slot("freeze") == []
    assert resolved.slot("optimizer") == [resolved.entry("optimizer")]
    assert resolved.entry("optimizer").params.lr == 0.01
    with pytest.raises(KeyError, match="no component at spec path 'loss\\[5\\]'"):
        resolved.entry("loss[5]")
    with pytest.raises(KeyError, match="'trainer' is not a component slot"):
        resolved.slot("trainer")


def test_load_spec_is_the_resolved_spec(small_spec):
    assert load_spec(small_spec).model_dump() == load_resolved(small_spec).spec.model_dump()
    assert torchtk.load_spec(small_spec).model_dump() == load_resolved(small_spec).spec.model_dump()


def test_a_model_by_import_path_has_an_entry_without_component(small_spec, tmp_path, monkeypatch):
    (tmp_path / "entry_models.py").write_text("def tiny(width=4):\n    return width\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    small_spec["model"] = {"import": "entry_models:tiny", "params": {"width": 6}}
    entry = load_resolved(small_spec).entry("model")
    assert (entry.path, entry.kind, entry.component, entry.params) == ("model", "model", None, None)
    assert entry.ref.import_ == "entry_models:tiny" and entry.ref.params == {"width": 6}


def test_resolve_uses_the_registry_it_is_given(small_spec):
    from torchtk.testing import registry_with

    registry = registry_with()
    spec = RunSpec.model_validate(small_spec)
    resolved = resolve(spec, registry)
    assert resolved.registry is registry and resolved.spec is spec
    assert load_resolved(small_spec, registry=registry).registry is registry


# -- one table of slots ----------------------------------------------------------------------------


def fields_holding_refs(model, prefix=""):
    """Dotted paths of every field, nested models included, that holds component refs."""
    from pydantic import BaseModel

    found = {}
    for name, hint in typing.get_type_hints(model).items():
        inner = [t for t in (hint, *typing.get_args(hint)) if isinstance(t, type) and issubclass(t, BaseModel)]
        for sub in inner:
            if issubclass(sub, ComponentRef):
                found[prefix + name] = hint
            found.update(fields_holding_refs(sub, f"{prefix}{name}."))
    return found


def test_slots_are_the_run_spec_fields_that_hold_component_refs():
    hints = fields_holding_refs(RunSpec)
    assert {slot.field for slot in SLOTS} == set(hints)
    assert COMPONENT_SLOTS == {slot.field for slot in SLOTS if "." not in slot.field}
    for slot in SLOTS:
        expected = list[slot.ref_model] if slot.many else slot.ref_model
        assert hints[slot.field] == expected, slot
    assert ONE_OR_MANY == {"loss", "scheduler"}


def test_component_refs_follow_the_slot_table(small_spec):
    spec = load_spec(small_spec)
    refs = spec.component_refs()
    assert [path for path, _, _ in refs] == [e.path for e in load_resolved(small_spec).entries]
    assert refs[0] == ("model", "model", spec.model) and refs[2] == ("loss[0]", "loss", spec.loss[0])


def test_null_scheduler_is_no_scheduler_but_null_loss_is_an_error(small_spec):
    small_spec["scheduler"] = None
    assert load_spec(small_spec).scheduler == []
    small_spec["loss"] = None
    with pytest.raises(SpecError, match="loss: Input should be a valid list"):
        load_spec(small_spec)
