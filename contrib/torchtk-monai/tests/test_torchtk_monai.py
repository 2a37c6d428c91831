"""torchtk-monai: the catalog against monai's classes, each loss equal to calling monai
directly on MONAI's own layout, torchtk's target layouts, bad input, and a short training run."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import torchtk
import torchtk_monai
from torchtk.core import cli
from torchtk.core.registry import set_registry
from torchtk.core.spec import load_spec
from torchtk.testing import registry_with

monai_losses = pytest.importorskip("monai.losses")

REGISTRY = registry_with(torchtk_monai)
NAMES = sorted(torchtk_monai.CATALOG)
OWN = {"mode", "from_logits"}  # torchtk's conventions, in place of sigmoid/softmax/to_onehot_y


def batch(mode, seed=0):
    torch.manual_seed(seed)
    if mode == "multiclass":
        return torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    channels = 1 if mode == "binary" else 3
    return torch.randn(2, channels, 16, 16), (torch.rand(2, channels, 16, 16) > 0.6).float()


def monai_direct(name, mode, output, target, **params):
    """The monai class called the way MONAI's docs call it: (N, 1, H, W) index targets
    with to_onehot_y for multiclass, sigmoid or softmax on the logits."""
    cls = getattr(monai_losses, torchtk_monai.CATALOG[name][0])
    arguments = {torchtk_monai.RENAMED.get(k, k): v for k, v in params.items()}
    if mode == "multiclass":
        return cls(softmax=True, to_onehot_y=True, **arguments)(output, target.unsqueeze(1))
    return cls(sigmoid=True, **arguments)(output, target)


def test_conforms():
    import torchtk.testing as kit

    kit.assert_plugin_ok(torchtk_monai)  # the plugin test kit: static and behaviour checks


@pytest.mark.parametrize("name", NAMES)
def test_the_catalog_names_monai_classes_and_arguments(name):
    class_name, _, params = torchtk_monai.CATALOG[name]
    constructor = inspect.signature(getattr(monai_losses, class_name).__init__).parameters
    for field in set(params.model_fields) - OWN:
        argument = torchtk_monai.RENAMED.get(field, field)
        assert argument in constructor, f"{name}.{field}: monai {class_name} has no {argument}"
        default = params.model_fields[field].default
        assert default == constructor[argument].default, f"{name}.{field}: default {default} is not monai's"


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("name", NAMES)
def test_defaults_equal_monai_with_a_gradient(name, mode):
    output, target = batch(mode)
    output.requires_grad_()
    loss = REGISTRY.create("loss", name, mode=mode)
    value = loss(output, target)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    torch.testing.assert_close(value.detach(), monai_direct(name, mode, output.detach(), target))


@pytest.mark.parametrize("name, params", [
    ("generalized_dice", {"w_type": "simple", "batch": True, "include_background": False}),
    ("dice_focal", {"gamma": 1.0, "lambda_dice": 0.3, "jaccard": True, "weight": [1.0, 2.0, 0.5]}),
    ("generalized_dice_focal", {"w_type": "uniform", "lambda_gdl": 2.0, "reduction": "sum"}),
    ("cldice", {"iterations": 5, "smooth_nr": 0.5}),
    ("dice_cldice", {"alpha": 0.8, "iterations": 2}),
])
def test_params_reach_monai(name, params):
    output, target = batch("multiclass", seed=1)
    got = REGISTRY.create("loss", name, mode="multiclass", **params)(output, target)
    torch.testing.assert_close(got, monai_direct(name, "multiclass", output, target, **params))
    assert not torch.allclose(got, REGISTRY.create("loss", name, mode="multiclass")(output, target))


@pytest.mark.parametrize("name", NAMES)
def test_volumes(name):
    torch.manual_seed(2)
    output, target = torch.randn(2, 3, 4, 8, 8), torch.randint(0, 3, (2, 4, 8, 8))
    got = REGISTRY.create("loss", name, mode="multiclass")(output, target)
    torch.testing.assert_close(got, monai_direct(name, "multiclass", output, target))


def test_torchtk_layouts_give_the_same_value():
    """Binary without a channel axis, and multiclass one-hot targets, as torchtk's dice takes them."""
    output, target = batch("binary")
    loss = REGISTRY.create("loss", "dice_focal")
    torch.testing.assert_close(loss(output[:, 0], target[:, 0]), loss(output, target))
    torch.testing.assert_close(loss(output, target[:, 0]), loss(output, target))
    output, target = batch("multiclass")
    loss = REGISTRY.create("loss", "generalized_dice", mode="multiclass")
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1)
    torch.testing.assert_close(loss(output, onehot), loss(output, target))
    probabilities = REGISTRY.create("loss", "generalized_dice", mode="multiclass", from_logits=False)
    torch.testing.assert_close(probabilities(output.softmax(1), target), loss(output, target))


@pytest.mark.parametrize("output, target, message", [
    (torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2, 8, 8)), "class indices must be in 0..2"),
    (torch.randn(2, 3, 8, 8), torch.rand(2, 8, 8), "must be integers"),
    (torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 4, 4)), "do not fit"),
])
def test_bad_inputs_name_the_loss_and_shapes(output, target, message):
    loss = REGISTRY.create("loss", "dice_focal", mode="multiclass")
    with pytest.raises(torchtk.TorchtkError, match=message):
        loss(output, target)


SHAPES = {
    "name": "shapes-monai", "seed": 0,
    "model": {"name": "unet", "params": {"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 1}},
    "data": {"name": "shapes", "params": {"n_samples": 64, "size": 16}, "batch_size": 16, "val_split": 0.25},
    "loss": {"name": "dice_focal", "params": {"mode": "binary"}},
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "metrics": ["iou"],
    "trainer": {"epochs": 2, "device": "cpu", "monitor": "val_iou", "mode": "max"},
}


def test_a_short_training_run(tmp_path):
    spec = {**SHAPES, "trainer": {**SHAPES["trainer"], "output_dir": str(tmp_path)}}
    result = torchtk.train(spec, registry=REGISTRY, progress=False)
    assert len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    load_spec(result.run_dir / "spec.json", registry=REGISTRY)  # what --resume and tk evaluate read back


@pytest.mark.parametrize("params, message", [
    ({"mode": "binary", "include_background": False}, "include_background: false needs mode multiclass"),
    ({"mode": "multiclass", "gamma": -1}, "loss[0].params.gamma"),
    ({"mode": "multiclass", "weight": [1, -2]}, "loss[0].params.weight"),
    ({"mode": "softmax"}, "loss[0].params.mode"),
])
def test_bad_params_exit_2(tmp_path, capsys, params, message):
    spec = {**SHAPES, "loss": {"name": "dice_focal", "params": params}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    set_registry(REGISTRY)
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["validate", str(path)])
    finally:
        set_registry(None)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and "Traceback" not in err, err


def test_the_readme_example_validates():
    from pathlib import Path

    resolved = load_spec(Path(__file__).parents[1] / "examples" / "shapes-dice-focal.json", registry=REGISTRY)
    assert resolved.loss[0].name == "dice_focal"
