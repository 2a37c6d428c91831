"""The run spec: strict validation with spec paths, shorthands, YAML, --set overrides."""

from __future__ import annotations

import pytest

import torchtk
from torchtk.core.errors import SpecError, UserInputError
from torchtk.core.spec import RunSpec, apply_override, load_spec


def problems(spec, overrides=None):
    with pytest.raises(SpecError) as raised:
        load_spec(spec, overrides=overrides)
    return dict(raised.value.problems)


def test_the_contract_example_validates(small_spec):
    spec = torchtk.load_spec(small_spec)
    assert isinstance(spec, RunSpec)
    assert [term.name for term in spec.loss] == ["focal", "l2_regularization"]
    # params are completed with their defaults, so the saved spec is explicit
    assert spec.loss[0].params["alpha"] == 0.75 and spec.loss[0].params["gamma"] == 2.0
    assert spec.loss[0].params["from_logits"] is True and spec.loss[0].params["reduction"] == "mean"


def test_bare_strings_and_single_components_are_shorthands(small_spec):
    small_spec["loss"] = "bce_with_logits"
    small_spec["metrics"] = ["acc"]
    spec = load_spec(small_spec)
    assert spec.loss[0].name == "bce_with_logits" and spec.loss[0].weight == 1.0
    assert spec.metrics[0].name == "accuracy"  # alias resolved
    assert [s.name for s in spec.scheduler] == ["step"]


def test_invalid_param_names_its_spec_path_and_bound(small_spec):
    small_spec["loss"][0]["params"]["gamma"] = -1
    found = problems(small_spec)
    assert "greater than or equal to 0" in found["loss[0].params.gamma"]


def test_unknown_keys_are_errors_everywhere(small_spec):
    small_spec["trainer"]["epochz"] = 3
    small_spec["loss"][0]["params"]["gama"] = 2
    small_spec["extra"] = 1
    found = problems(small_spec)
    assert found["trainer.epochz"].startswith("unknown key 'epochz'; valid keys: epochs,")
    assert "extra" in found


def test_unknown_param_key_lists_valid_params(small_spec):
    small_spec["loss"][0]["params"]["gama"] = 2
    found = problems(small_spec)
    message = found["loss[0].params.gama"]
    assert message.startswith("unknown key 'gama'; valid keys: ") and "alpha" in message and "gamma" in message


def test_strings_are_not_coerced_to_numbers(small_spec):
    small_spec["optimizer"]["params"]["lr"] = "0.01"
    small_spec["trainer"]["epochs"] = "3"
    assert "valid integer" in problems(small_spec)["trainer.epochs"]
    small_spec["trainer"]["epochs"] = 3
    assert "valid number" in problems(small_spec)["optimizer.params.lr"]


def test_unknown_component_gets_did_you_mean(small_spec):
    small_spec["loss"][0]["name"] = "facal"
    message = problems(small_spec)["loss[0].name"]
    assert "Did you mean 'focal'?" in message and "tk list losses" in message


def test_missing_required_param(small_spec):
    del small_spec["model"]["params"]["in_features"]
    assert problems(small_spec)["model.params.in_features"] == "required, but missing"


def test_yaml_specs_are_accepted(small_spec, spec_file):
    import yaml

    path = spec_file(name="spec.yaml", text=yaml.safe_dump(small_spec))
    assert load_spec(path).name == "rings-small"


def test_malformed_json_reports_file_line_and_column(spec_file):
    path = spec_file(text='{\n  "name": "x",\n  "seed": 0,,\n}')
    with pytest.raises(UserInputError, match=r"spec.json:3:13: malformed JSON"):
        load_spec(path)


def test_malformed_yaml_reports_file_line_and_column(spec_file):
    path = spec_file(name="bad.yaml", text="name: x\nmodel: [unclosed\n")
    with pytest.raises(UserInputError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        load_spec(path)


def test_missing_spec_file_names_the_bundled_examples(tmp_path):
    with pytest.raises(UserInputError, match=r"no such spec file or bundled example.*rings"):
        load_spec(tmp_path / "nope.json")


def test_bundled_example_by_name():
    assert load_spec("rings").name == "rings"


def test_overrides_are_typed_by_the_schema(small_spec):
    spec = load_spec(small_spec, overrides=["optimizer.params.lr=0.05", "trainer.epochs=7", "trainer.device=cpu",
                                            "loss[0].params.gamma=1.5", "data.val_split=0.5"])
    assert spec.optimizer.params["lr"] == 0.05
    assert spec.trainer.epochs == 7 and spec.trainer.device == "cpu"
    assert spec.loss[0].params["gamma"] == 1.5
    assert spec.data.val_split == 0.5


def test_override_of_a_shorthand_component_expands_it(small_spec):
    small_spec["optimizer"] = "sgd"
    spec = load_spec(small_spec, overrides=["optimizer.params.momentum=0.9"])
    assert spec.optimizer.params["momentum"] == 0.9


def test_override_with_an_unknown_path_is_named(small_spec):
    found = problems(small_spec, ["trainer.epochz=3"])
    (path, message), = found.items()
    assert path == "--set trainer.epochz=3: trainer.epochz"
    assert message.startswith("no such setting; valid keys: epochs")


def test_override_with_a_wrong_type_is_named(small_spec):
    found = problems(small_spec, ["trainer.epochs=abc"])
    assert "valid integer" in found["--set trainer.epochs=abc: trainer.epochs"]


def test_override_into_a_missing_list_index_fails(small_spec):
    with pytest.raises(UserInputError, match=r"loss\[5\] does not exist"):
        load_spec(small_spec, overrides=["loss[5].weight=2"])


def test_override_needs_an_equals_sign():
    with pytest.raises(UserInputError, match="expected key.path=value"):
        apply_override({}, "trainer.epochs")


def test_schema_includes_every_component_and_its_params():
    from torchtk.core.spec import run_spec_schema

    from torchtk.core.spec.schema import component_branches

    schema = run_spec_schema()
    alternatives = schema["$defs"]["loss_ref"]["anyOf"]
    focal = next(c for c in component_branches(schema, "loss")
                 if c["properties"]["name"]["anyOf"][0]["enum"][0] == "focal")
    assert focal is schema["$defs"]["loss.focal"]
    assert focal["properties"]["params"]["properties"]["gamma"]["minimum"] == 0
    assert "weight" in focal["properties"]  # the slot's own fields are allowed too
    assert "focal" in alternatives[0]["anyOf"][0]["enum"]  # the bare-string shorthand


def test_schema_accepts_valid_specs_and_rejects_invalid_ones(small_spec):
    jsonschema = pytest.importorskip("jsonschema")
    from torchtk.core.spec import run_spec_schema

    schema = run_spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(small_spec)) == []
    assert list(validator.iter_errors(load_spec("rings").model_dump(mode="json"))) == []
    small_spec["loss"][0]["params"]["gamma"] = -1
    assert list(validator.iter_errors(small_spec))
    small_spec["loss"][0]["params"]["gamma"] = 2.0
    small_spec["loss"][0]["name"] = "torchtk::focal"  # a scoped name, as the CLI accepts
    assert list(validator.iter_errors(small_spec)) == []
    small_spec["optimizer"]["name"] = "adma"
    assert list(validator.iter_errors(small_spec))


def test_model_by_import_path_is_checked_and_trained(small_spec, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch\n\ndef tiny(width=4):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    small_spec["model"] = {"import": "my_models:tiny", "params": {"width": 6}}
    spec = load_spec(small_spec)
    assert spec.model.model_dump() == {"import": "my_models:tiny", "params": {"width": 6}}
    assert load_spec(spec.model_dump(mode="json")).model.import_ == "my_models:tiny"  # spec.json round-trips
    small_spec["trainer"]["epochs"] = 1
    assert torchtk.train(small_spec).last["train_loss"] > 0
    # validation never imports the module (tk validate runs no code a spec names): the factory's params and
    # attribute are checked where tk train imports it, before training, as input errors naming the spec path
    small_spec["model"]["params"] = {"depth": 2}
    load_spec(small_spec)
    with pytest.raises(UserInputError, match=r"^model\.params: my_models:tiny does not accept these params"):
        torchtk.train(small_spec)
    small_spec["model"] = {"import": "my_models:missing"}
    with pytest.raises(UserInputError, match=r"^model\.import: cannot import 'my_models:missing': AttributeError"):
        torchtk.train(small_spec)
    small_spec["model"] = {"import": "no_such_module_anywhere:tiny"}  # a module that is not there: found unimported
    assert "no module named 'no_such_module_anywhere' on the Python path" in problems(small_spec)["model.import"]
    small_spec["model"] = {"import": "my_models:tiny", "name": "mlp"}
    assert "exactly one of name or import" in problems(small_spec)["model"]


def test_duplicate_keys_and_nan_are_malformed_json(spec_file):
    with pytest.raises(UserInputError, match="the key 'seed' appears twice"):
        load_spec(spec_file(text='{"seed": 1, "seed": 2}'))
    with pytest.raises(UserInputError, match="NaN is not a JSON number"):
        load_spec(spec_file(text='{"seed": NaN}'))


def test_a_component_whose_params_model_cannot_load_is_a_spec_error_and_left_out_of_the_schema(small_spec):
    import types
    import warnings

    from torchtk import Component, hookimpl
    from torchtk.core.spec import run_spec_schema
    from torchtk.testing import registry_with

    module = types.ModuleType("lazy_broken")

    @hookimpl
    def register_components(register):
        register(Component("loss", "needs_missing_dep", "Needs a missing package.",
                           params="torchtk_missing_dependency_xyz:Params"))

    module.register_components = register_components
    registry = registry_with(module)
    small_spec["loss"] = "needs_missing_dep"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SpecError, match=r"loss\[0\].name: .*cannot load its params model: ModuleNotFoundError"):
            load_spec(small_spec, registry=registry)
        schema = run_spec_schema(registry)
    assert "needs_missing_dep" not in schema["$defs"]["loss_ref"]["anyOf"][0]["anyOf"][0]["enum"]
