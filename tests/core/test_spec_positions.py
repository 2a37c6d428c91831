"""Where a problem is: every validation problem of a spec file names its file:line:column
(JSON and YAML), and a key written twice is reported where it is written the second time."""

from __future__ import annotations

import pytest

from torchtk.core.errors import SpecError, UserInputError
from torchtk.core.spec import load_spec
from torchtk.core.spec.sourcemap import json_source_map

JSON_SPEC = """{
  "name": "positions",
  "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [4, "wide"], "out_features": 1}},
  "data": {"name": "rings", "params": {"n_positive": 20, "n_negative": 60}, "batch_size": 10},
  "loss": [{"name": "focal", "params": {"gamma": 2.0}},
           {"name": "l2_regularization", "params": {"alpha": 0.0001}}],
  "optimizer": "adam",
  "trainer": {"epochs": 1, "device": "cpu"}
}
"""

YAML_SPEC = """\
name: positions
model:
  name: mlp
  params:
    in_features: 2
    hidden: [4, wide]
    out_features: 1
data:
  name: rings
  params: {n_positive: 20, n_negative: 60}
  batch_size: 10
loss:
  - name: focal
    params: {gamma: 2.0}
  - name: l2_regularization
    params:
      alpha: 0.0001
optimizer: adam
trainer:
  epochs: 1
  device: cpu
"""


def position_of(text: str, snippet: str, occurrence: int = 0) -> tuple[int, int]:
    """Line and column (from 1) of the start of the ``occurrence``-th ``snippet`` in ``text``."""
    offset = -1
    for _ in range(occurrence + 1):
        offset = text.index(snippet, offset + 1)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def located(path, overrides=None):
    """``{spec path: (line, column) or None}`` and the message of the SpecError ``path`` gives."""
    with pytest.raises(SpecError) as raised:
        load_spec(path, overrides=overrides)
    error = raised.value
    return {p: pos for (p, _), pos in zip(error.problems, error.positions)}, str(error)


def test_the_json_spec_is_valid_once_fixed(spec_file):
    assert load_spec(spec_file(text=JSON_SPEC.replace('"wide"', "8"))).name == "positions"
    assert load_spec(spec_file(name="spec.yaml", text=YAML_SPEC.replace("wide", "8"))).name == "positions"


def test_json_list_item_of_the_wrong_type_names_line_and_column(spec_file):
    path = spec_file(text=JSON_SPEC)
    found, message = located(path)
    assert found == {"model.params.hidden[1]": position_of(JSON_SPEC, '"wide"')} == {"model.params.hidden[1]": (3, 71)}
    assert message == f'{path}:3:71: model.params.hidden[1]: Input should be a valid integer (got "wide")'


def test_json_value_unknown_key_and_missing_key_each_point_at_their_place(spec_file):
    text = (JSON_SPEC.replace('"wide"', "8")
            .replace('"gamma": 2.0', '"gamma": -1')  # a value out of bounds, in the first list item
            .replace('"alpha": 0.0001', '"alpha": 0.0001, "alfa": 1')  # an unknown key, in the second
            .replace('"in_features": 2, ', ""))  # a missing key
    path = spec_file(text=text)
    found, message = located(path)
    assert found == {
        "model.params.in_features": position_of(text, '{"hidden"'),  # the object that lacks it
        "loss[0].params.gamma": position_of(text, "-1"),
        "loss[1].params.alfa": position_of(text, '"alfa"'),
    }
    line, column = position_of(text, '"alfa"')
    assert message.startswith(f"{path}: invalid spec\n")
    assert f"\n  {path}:{line}:{column}: loss[1].params.alfa: unknown key 'alfa'; valid keys: alpha" in message
    text = text.replace('"epochs": 1', '"epochz": 1')  # an unknown key of the spec itself (first pass)
    found, _ = located(spec_file(text=text))
    assert found == {"trainer.epochz": position_of(text, '"epochz"')}


def test_json_first_and_second_pass_problems_both_have_positions(spec_file):
    text = JSON_SPEC.replace('"wide"', "8").replace('"gamma": 2.0', '"gamma": -1')
    found, _ = located(spec_file(text=text))  # second pass: the focal params
    assert found == {"loss[0].params.gamma": position_of(text, "-1")}
    text = text.replace('"batch_size": 10', '"batch_size": 0')
    found, _ = located(spec_file(text=text))  # first pass: the spec's own fields (the second does not run)
    line, column = position_of(text, '"batch_size": 0')
    assert found == {"data.batch_size": (line, column + len('"batch_size": '))}


def test_a_single_ref_or_bare_name_where_a_list_may_be_is_located(spec_file):
    text = JSON_SPEC.replace('"wide"', "8").replace(
        '[{"name": "focal", "params": {"gamma": 2.0}},\n           {"name": "l2_regularization", "params": {"alpha": 0.0001}}]',
        '{"name": "focal", "params": {"gamma": -1}}')
    found, _ = located(spec_file(text=text))
    assert found == {"loss[0].params.gamma": position_of(text, "-1")}
    text = text.replace('{"name": "focal", "params": {"gamma": -1}}', '"facal"')
    found, message = located(spec_file(text=text))
    assert found == {"loss[0].name": position_of(text, '"facal"')}
    assert "Did you mean 'focal'?" in message


def test_yaml_problems_name_line_and_column(spec_file):
    path = spec_file(name="spec.yaml", text=YAML_SPEC)
    found, message = located(path)
    assert found == {"model.params.hidden[1]": position_of(YAML_SPEC, "wide")} == {"model.params.hidden[1]": (6, 17)}
    assert message.startswith(f"{path}:6:17: model.params.hidden[1]: ")
    text = (YAML_SPEC.replace("wide", "8").replace("gamma: 2.0", "gamma: -1")
            .replace("      alpha: 0.0001\n", "      alpha: 0.0001\n      alfa: 1\n")
            .replace("    in_features: 2\n", "").replace("epochs: 1", "epochz: 1"))
    found, _ = located(spec_file(name="spec.yaml", text=text))
    assert found == {"trainer.epochz": position_of(text, "epochz")}
    text = text.replace("epochz: 1", "epochs: 1")
    found, _ = located(spec_file(name="spec.yaml", text=text))
    assert found == {
        "model.params.in_features": position_of(text, "hidden"),  # the params mapping, which starts there
        "loss[0].params.gamma": position_of(text, "-1"),
        "loss[1].params.alfa": position_of(text, "alfa"),
    }


def test_yaml_anchors_and_merge_keys_point_where_the_value_is_written(spec_file):
    text = YAML_SPEC.replace("wide", "8").replace(
        "    params: {gamma: 2.0}\n", "    params: &focal\n      gamma: -1\n").replace(
        "  - name: l2_regularization\n    params:\n      alpha: 0.0001\n",
        "  - name: focal\n    params:\n      <<: *focal\n      alpha: 0.5\n")
    found, _ = located(spec_file(name="spec.yaml", text=text))
    assert found == {"loss[0].params.gamma": position_of(text, "-1"), "loss[1].params.gamma": position_of(text, "-1")}


def test_set_problems_name_the_option_and_no_file_position(spec_file):
    text = JSON_SPEC.replace('"wide"', "8")
    found, message = located(spec_file(text=text), overrides=["loss[0].params.gamma=-2"])
    assert found == {"--set loss[0].params.gamma=-2: loss[0].params.gamma": None}
    path = spec_file(text=text)
    found, message = located(path, overrides=["trainer.epochs=0"])
    assert found == {"--set trainer.epochs=0: trainer.epochs": None}
    assert message == (f"{path}: --set trainer.epochs=0: trainer.epochs: Input should be greater than or equal "
                       "to 1 (got 0)")
    # a value replaced by --set: what is under it is not where the file says
    found, _ = located(spec_file(text=text), overrides=['model.params={"in_features": 2}'])
    assert found == {"model.params.out_features": None}


def test_set_on_a_single_ref_is_blamed_on_the_option(spec_file):
    text = JSON_SPEC.replace('"wide"', "8").replace(
        '[{"name": "focal", "params": {"gamma": 2.0}},\n           {"name": "l2_regularization", "params": {"alpha": 0.0001}}]',
        '{"name": "focal", "params": {"gamma": 2.0}}')
    found, _ = located(spec_file(text=text), overrides=["loss.params.gamma=-2"])
    assert found == {"--set loss.params.gamma=-2: loss[0].params.gamma": None}


def test_dict_specs_have_no_positions(small_spec):
    small_spec["loss"][0]["params"]["gamma"] = -1
    found, message = located(small_spec)
    assert found == {"loss[0].params.gamma": None}
    assert message.startswith("spec: loss[0].params.gamma: ")


# -- a key written twice -------------------------------------------------------------------------


@pytest.mark.parametrize("text, snippet, occurrence", [
    ('{"seed": 1,\n "seed": 2}', '"seed"', 1),
    # the key appears before as a value string and inside another object: the duplicate is the third "seed"
    ('{"seed": 1,\n  "name": "seed",\n  "data": {"seed": 0},\n  "trainer": {}, "seed": 2}', '"seed"', 3),
    # nested, after the same key in an enclosing object
    ('{"name": "x",\n  "model": {"name": "mlp",\n    "params": {"name": 1, "hidden": [1], "name": 2}}}', '"name"', 3),
    # the same key, spelt with an escape
    ('{"data": {"name": "rings",\n           "\\u006eame": "rings"}}', '"\\u006eame"', 0),
])
def test_duplicate_json_key_points_at_the_duplicate(spec_file, text, snippet, occurrence):
    line, column = position_of(text, snippet, occurrence)
    with pytest.raises(UserInputError, match=rf"spec.json:{line}:{column}: malformed JSON: the key '\w+' appears twice"):
        load_spec(spec_file(text=text))


@pytest.mark.parametrize("text, snippet, occurrence", [
    ("seed: 1\nname: seed\nseed: 2\n", "seed", 2),
    ("name: x\nmodel:\n  name: mlp\n  params: {name: 1, hidden: [1], name: 2}\n", "name", 3),
    ("data:\n  params: {seed: 1}\n  name: rings\n  seed: 2\n  seed: 3\n", "seed", 2),
])
def test_duplicate_yaml_key_points_at_the_duplicate(spec_file, text, snippet, occurrence):
    line, column = position_of(text, snippet, occurrence)
    with pytest.raises(UserInputError, match=rf"spec.yaml:{line}:{column}: malformed YAML: the key '\w+' appears twice"):
        load_spec(spec_file(name="spec.yaml", text=text))


def test_json_source_map_records_values_and_keys():
    text = '{"a": [1, {"b": "x"}],\n "c": null}'
    where = json_source_map(text)
    assert where.values[()] == (1, 1)
    assert where.values[("a", 1, "b")] == (1, 17) and where.keys[("a", 1, "b")] == (1, 12)
    assert where.values[("c",)] == (2, 7) and where.keys[("c",)] == (2, 2)
    assert where.find(("a", 1, "missing")) == (1, 11)  # falls back to the enclosing object
    assert where.find(("c",), key=True) == (2, 2)
