"""tk summary: the model as the run would train it, without training."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from pydantic import Field

from torchtk import Component, Params, hookimpl
from torchtk.core.registry import set_registry
from torchtk.core.summary import compute_summary, format_shape, output_shapes
from torchtk.testing import registry_with


def mlp_numbers(widths):
    """Parameters of an MLP with these layer widths, counted by hand: weights and biases."""
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


class HeadLrParams(Params):
    """Freeze the first layer; the last layer gets its own lr and no weight decay."""

    head_lr: float = Field(gt=0, description="Lr of the last layer.")


class GroupsPlugin:
    __name__ = "summary_test_plugin"

    @hookimpl
    def register_components(self, register):
        register(Component("freeze", "head_lr", "Freeze layer 0; the head gets its own lr.", params=HeadLrParams))

    @hookimpl
    def freeze_policy(self, name, params):
        def policy(model):
            for p in model[0].parameters():
                p.requires_grad_(False)
            return [{"name": "head", "params": list(model[-1].parameters()), "lr": params.head_lr,
                     "weight_decay": 0.0}]
        return policy


def test_rings_example(tk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tk("summary", "rings")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    total = mlp_numbers([2, 32, 32, 1])
    assert total == 1185 and f"params       {total:,}" in out
    assert "trainable    1,185" in out and "frozen           0" in out
    for name, kind, shape in [("0", "Linear", "[4, 32]"), ("1", "ReLU", "[4, 32]"), ("4", "Linear", "[4, 1]")]:
        assert any(line.split()[:3] == [name, kind, *shape.split()[:1]] for line in out.splitlines()), out
    assert "optimizer Adam, 1 param group(s)" in out
    assert [line.split()[:5] for line in out.splitlines() if line.strip().startswith("default")] == \
        [["default", "0.01", "0", "6", "1,185"]]
    assert not (tmp_path / "runs").exists()  # nothing trained, no run directory


def test_a_freeze_policy_marks_frozen_modules(tk, spec_file, small_spec):
    small_spec["freeze"] = [{"name": "freeze", "params": {"modules": ["0."]}}]
    result = tk("summary", spec_file(small_spec), "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    frozen, total = mlp_numbers([2, 16]), mlp_numbers([2, 16, 1])
    assert data["totals"]["params"] == total and data["totals"]["frozen"] == frozen == 48
    assert data["totals"]["trainable"] == total - frozen
    assert data["totals"]["frozen_mb"] == pytest.approx(frozen * 4 / 1e6)
    status = {row["name"]: row["status"] for row in data["modules"]}
    assert status == {"": "partly frozen", "0": "frozen", "1": "", "2": "trainable"}
    assert data["groups"] == [{"name": "default", "lr": 0.01, "weight_decay": 0.0, "tensors": 2,
                               "params": total - frozen}]
    text = tk("summary", spec_file(small_spec)).stdout
    assert any(line.split() == ["0", "Linear", "[4,", "16]", "48", "frozen"] for line in text.splitlines()), text


def test_param_groups_from_a_policy_are_listed(tk, spec_file, small_spec):
    small_spec["freeze"] = [{"name": "head_lr", "params": {"head_lr": 0.001}}]
    small_spec["optimizer"] = {"name": "adamw", "params": {"lr": 0.01, "weight_decay": 0.05}}
    set_registry(registry_with(GroupsPlugin()))
    result = tk("summary", spec_file(small_spec))
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()
            if line.strip().startswith(("default", "head"))}
    assert rows == {"head": ["0.001", "0", "2", "17"]}  # layer 0 frozen: the head is all that trains
    assert "optimizer AdamW, 1 param group(s)" in result.stdout


def test_json_structure(tk, spec_file, small_spec):
    small_spec["init"] = [{"name": "kaiming_normal", "params": {"nonlinearity": "relu"}}]
    data = tk("summary", spec_file(small_spec), "--json").json()
    assert set(data) == {"name", "model", "input_shape", "modules", "totals", "reports", "optimizer", "groups"}
    assert data["name"] == "rings-small" and data["model"] == "Sequential" and data["input_shape"] == [4, 2]
    assert data["modules"][0] == {"name": "", "type": "Sequential", "depth": 0, "output_shape": [4, 1],
                                  "params": 65, "trainable": 65, "frozen": 0, "status": "trainable"}
    assert [m["name"] for m in data["modules"]] == ["", "0", "1", "2"]
    assert set(data["totals"]) == {"params", "trainable", "frozen", "params_mb", "trainable_mb", "frozen_mb",
                                   "buffers_mb"}
    assert data["reports"] == ["init[0]: kaiming_normal: 4 tensors initialised (Linear 4)"]
    assert data["optimizer"] == "Adam"
    json.dumps(data)


def test_depth_limits_the_rows(tk, spec_file):
    out = tk("summary", spec_file(), "--depth", "0").stdout
    assert "(model)" in out and "Linear" not in out


@pytest.mark.parametrize("setting, fragment", [
    ("model.params.hidden=oops", "model.params.hidden"),
    ("optimizer.name=adamm", "adam"),
    ("nonsense=1", "nonsense"),
])
def test_bad_spec_exits_2(tk, spec_file, setting, fragment):
    result = tk("summary", spec_file(), "--set", setting)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert fragment in result.stderr


def test_missing_or_malformed_file_exits_2(tk, spec_file, tmp_path):
    assert tk("summary", tmp_path / "missing.json").exit_code == 2
    result = tk("summary", spec_file(text="{\"name\": "))
    assert result.exit_code == 2 and "spec.json" in result.stderr


def test_frozen_batchnorm_is_marked_eval():
    summary = compute_summary("shapes-dice", overrides=["data.params.n_samples=16",
                                               'freeze=[{"name": "freeze", "params": {"modules": ["encoders.0."]}}]'])
    rows = {row.name: row for row in summary.modules}
    assert rows["encoders.0.1"].status == "frozen, eval" and rows["encoders.1.1"].status == "trainable"
    assert summary.input_shape == [3, 1, 32, 32]  # 3 validation samples of 16
    assert rows["encoders.0"].output_shape == [3, 8, 32, 32] and rows["encoders"].output_shape is None
    assert summary.totals["buffers_mb"] > 0


def test_output_shapes_restore_modes_and_rng():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5))
    model[1].eval()
    state = torch.get_rng_state()
    shapes = output_shapes(model, torch.ones(4, 2))
    assert torch.equal(state, torch.get_rng_state())
    assert model.training and not model[1].training and model[2].training
    assert shapes[id(model[2])] == [4, 3]


def test_shapes_of_several_outputs_and_of_modules_not_called():
    assert format_shape([4, 16]) == "[4, 16]"
    assert format_shape([[4, 16], [4]]) == "([4, 16], [4])"
    assert format_shape({"out": [4, 2]}) == "{out: [4, 2]}"
    assert format_shape(None) == "-"


def test_compute_summary_from_a_spec_object(small_spec):
    import torchtk

    spec = torchtk.load_spec(copy.deepcopy(small_spec))
    summary = compute_summary(spec)
    assert summary.totals["params"] == mlp_numbers([2, 16, 1]) and summary.groups[0].name == "default"


def test_a_model_that_does_not_fit_the_data_exits_2(tk, spec_file, small_spec):
    small_spec["model"]["params"]["in_features"] = 3
    result = tk("summary", spec_file(small_spec))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "model: the forward pass fails on a batch of the data" in result.stderr


def deep_model():
    """An MLP whose module names are long: tk summary must print them whole."""
    inner = torch.nn.Sequential()
    inner.add_module("a_rather_long_block_name", torch.nn.Sequential(torch.nn.Linear(2, 1)))
    outer = torch.nn.Sequential()
    outer.add_module("encoder_with_a_long_name", torch.nn.Sequential())
    outer.encoder_with_a_long_name.add_module("stage_number_one", inner)
    return outer


def test_long_module_names_are_never_cut(tk, spec_file, small_spec, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    small_spec["model"] = {"import": "tests.core.test_summary:deep_model"}
    small_spec["loss"] = "bce_with_logits"
    result = tk("summary", spec_file(small_spec))
    assert result.exit_code == 0, result.stderr
    assert "encoder_with_a_long_name.stage_number_one.a_rather_long_block_name.0  Linear" in result.stdout
    assert "…" not in result.stdout
