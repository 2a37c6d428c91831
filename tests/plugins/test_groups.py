"""Parameter-group policies: layer_lr, no_decay, layer_decay; how overlapping rules
resolve; lr_scale applied once after the optimizer is built; groups in runs and plans."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import torchtk
from torchtk.core.errors import UserInputError
from torchtk.core.param_groups import apply_lr_scale, merge_groups
from torchtk.core.plan import compute_plan
from torchtk.plugins.freezing import PatternError


def policy(name, **params):
    return torchtk.registry.create("freeze", name, **params)


def names_of(model, tensors):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(t)] for t in tensors]


def small_cnn():
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 4, 3), bn1=nn.BatchNorm2d(4), relu=nn.ReLU(),
                                     conv2=nn.Conv2d(4, 4, 3), norm=nn.GroupNorm(2, 4), pool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), ln=nn.LayerNorm(4), fc=nn.Linear(4, 2)))


def grouped(model, *policies):
    """Apply policies in order and merge their rules as the core does."""
    rules = []
    for index, p in enumerate(policies):
        rules += [(f"freeze[{index}]", rule) for rule in p(model) or []]
    return {g["name"]: g for g in merge_groups(model, rules)}


# -- layer_lr ------------------------------------------------------------------------------------------


def test_layer_lr_gives_the_tutorials_conv1_its_own_lr():
    model = small_cnn()
    layer_lr = policy("layer_lr", groups=[{"modules": ["conv1"], "lr": 0.01}])
    groups = grouped(model, layer_lr)
    assert list(groups) == ["conv1", "default"]
    assert names_of(model, groups["conv1"]["params"]) == ["conv1.weight", "conv1.bias"]
    assert groups["conv1"]["lr"] == 0.01 and "lr" not in groups["default"]
    assert layer_lr.torchtk_report == ["layer_lr 'conv1': 'conv1' (module): 2 tensors, 112 numbers -> lr 0.01"]


def test_overlapping_entries_resolve_per_option_later_wins():
    model = small_cnn()
    layer_lr = policy("layer_lr", groups=[{"modules": ["re:conv.*"], "lr": 0.1, "weight_decay": 0.5, "name": "convs"},
                                          {"modules": ["*.bias"], "lr_scale": 2.0, "name": "biases"},
                                          {"modules": ["conv2.weight"], "lr": 0.3, "name": "late"}])
    groups = grouped(model, layer_lr)
    assert names_of(model, groups["convs+biases"]["params"]) == ["conv1.bias", "conv2.bias"]
    # lr 0.1 and lr_scale 2 are different options: both kept (the group trains at 0.2)
    assert {k: groups["convs+biases"][k] for k in ("lr", "lr_scale", "weight_decay")} == \
        {"lr": 0.1, "lr_scale": 2.0, "weight_decay": 0.5}
    assert groups["convs+late"]["lr"] == 0.3 and groups["convs+late"]["weight_decay"] == 0.5  # lr: later wins
    assert names_of(model, groups["biases"]["params"]) == ["bn1.bias", "norm.bias", "ln.bias", "fc.bias"]
    optimizer = torch.optim.SGD(list(groups.values()), lr=0.01)
    apply_lr_scale(optimizer)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["convs+biases"] == pytest.approx(0.2) and lrs["biases"] == pytest.approx(0.02)
    assert lrs["convs"] == 0.1 and lrs["default"] == 0.01


def test_layer_lr_params_are_checked(small_spec):
    for entry, message in [({"modules": ["0"], "lr": 0.1, "lr_scale": 2.0}, "give lr or lr_scale, not both"),
                           ({"modules": ["0"]}, "give lr, lr_scale or weight_decay"),
                           ({"modules": ["0"], "lr": -1.0}, "greater than 0")]:
        spec = copy.deepcopy(small_spec)
        spec["freeze"] = [{"name": "layer_lr", "params": {"groups": [entry]}}]
        with pytest.raises(UserInputError, match=message):
            torchtk.load_spec(spec)
    with pytest.raises(PatternError, match=r"'cnov1' \(closest module names: conv1"):
        policy("layer_lr", groups=[{"modules": ["cnov1"], "lr": 0.1}])(small_cnn())


def test_apply_lr_scale_multiplies_once_and_checks_the_scale():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr_scale": 0.5}, {"params": [b], "lr": 0.2, "lr_scale": 3}], lr=0.1)
    apply_lr_scale(optimizer)
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.05), pytest.approx(0.6)]
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    assert scheduler.base_lrs == [pytest.approx(0.05), pytest.approx(0.6)]  # schedulers start from the scaled lr
    bad = torch.optim.SGD([{"params": [a], "lr_scale": "2"}], lr=0.1)
    with pytest.raises(UserInputError, match="lr_scale must be a positive number"):
        apply_lr_scale(bad)


def test_per_layer_lr_groups_in_a_run_and_in_tk_plan(small_spec, tk, spec_file, tmp_path):
    spec = copy.deepcopy(small_spec)
    spec["model"]["params"]["hidden"] = [8, 8]
    spec["freeze"] = [{"name": "freeze", "params": {"modules": ["2"]}},
                      {"name": "layer_lr", "params": {"groups": [{"modules": ["0"], "lr": 0.05},
                                                                 {"modules": ["4"], "lr_scale": 0.1, "name": "head"}]}}]
    spec["trainer"]["epochs"] = 2
    plan = compute_plan(spec)
    assert plan.groups == ["0", "head"]  # 2 is frozen: in no group, and no default group is left
    assert plan.updates[0].lr == pytest.approx([0.05, 0.001])
    result = torchtk.train(spec)
    assert [(row["lr/0"], row["lr/head"]) for row in result.history] == \
        [pytest.approx((0.05, 0.001)), pytest.approx((0.05, 0.001))]
    assert {"lr/0", "lr/head"} <= set((result.run_dir / "history.csv").read_text().splitlines()[0].split(","))
    log = (result.run_dir / "train.log").read_text()
    assert "freeze[1]: layer_lr 'head': '4' (module): 2 tensors, 9 numbers -> lr_scale 0.1" in log
    shown = tk("plan", spec_file(spec), "-o", tmp_path / "lr.png")
    assert shown.exit_code == 0, shown.stderr
    assert "lr 0" in shown.stdout and "lr head" in shown.stdout


# -- no_decay ----------------------------------------------------------------------------------------------


def test_no_decay_takes_biases_norms_and_one_d_parameters():
    model = small_cnn()
    model.register_parameter("scale", nn.Parameter(torch.ones(())))  # a 0-d parameter
    model.register_parameter("table", nn.Parameter(torch.ones(3, 3)))
    no_decay = policy("no_decay")
    groups = grouped(model, no_decay)
    assert names_of(model, groups["no_decay"]["params"]) == [
        "scale", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.bias", "norm.weight", "norm.bias", "ln.weight",
        "ln.bias", "fc.bias"]
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert names_of(model, groups["default"]["params"]) == ["table", "conv1.weight", "conv2.weight", "fc.weight"]
    assert no_decay.torchtk_report == ["no_decay: 10 tensors, 35 numbers at weight decay 0 (3 bias, 6 norm, 1 1-d)"]


def test_no_decay_reports_why_and_follows_the_flags():
    model = small_cnn()
    no_decay = policy("no_decay", norm=False, one_d=False, modules=["fc.weight"], weight_decay=1e-5)
    groups = grouped(model, no_decay)
    assert names_of(model, groups["no_decay"]["params"]) == [
        "conv1.bias", "bn1.bias", "conv2.bias", "norm.bias", "ln.bias", "fc.weight", "fc.bias"]
    assert groups["no_decay"]["weight_decay"] == 1e-5
    assert no_decay.torchtk_report[0] == "no_decay: 7 tensors, 30 numbers at weight decay 1e-05 (6 bias, 1 pattern)"
    assert no_decay.torchtk_report[1] == "no_decay 'fc.weight' (parameter): 1 tensor, 8 numbers"


# -- layer_decay -----------------------------------------------------------------------------------------------


def layers_of(model, decay_policy):
    rules = decay_policy(model)
    return {rule["name"]: (rule["lr_scale"], sorted({n.rsplit(".", 1)[0] for n in names_of(model, rule["params"])}))
            for rule in rules}


def test_layer_decay_numbers_a_vision_transformer():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=16, num_layers=3, num_heads=2, hidden_dim=8, mlp_dim=16,
                              num_classes=4)
    layers = layers_of(model, policy("layer_decay", decay=0.5))
    assert list(layers) == ["layer0", "layer1", "layer2", "layer3", "layer4"]
    assert layers["layer0"] == (0.5 ** 4, ["class_token", "conv_proj", "encoder"])  # encoder.pos_embedding
    assert layers["layer2"][0] == 0.25 and all(m.startswith("encoder.layers.encoder_layer_1")
                                               for m in layers["layer2"][1])
    assert layers["layer4"] == (1.0, ["encoder.ln", "heads.head"])


def test_layer_decay_numbers_swin_convnext_and_resnet():
    import torchvision
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.swin_transformer import SwinTransformer

    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 1], num_heads=[1, 1], window_size=[2, 2],
                           num_classes=4)
    layers = layers_of(swin, policy("layer_decay", decay=0.5))
    assert layers["layer0"][1] == ["features.0.0", "features.0.2"]  # the stem
    assert layers["layer3"][1] == ["features.2.norm", "features.2.reduction"] + \
        sorted(m for m in layers["layer3"][1] if m.startswith("features.3.0"))  # merging joins the next block
    assert layers["layer4"] == (1.0, ["head", "norm"])
    convnext = ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)], num_classes=4)
    layers = layers_of(convnext, policy("layer_decay", decay=0.5))
    assert len(layers) == 5 and layers["layer4"] == (1.0, ["classifier.0", "classifier.2"])
    assert {"features.2.0", "features.2.1"} <= set(layers["layer3"][1])  # downsampling with the next block
    resnet = torchvision.models.resnet18(num_classes=4)
    decay = policy("layer_decay", decay=0.9)
    layers = layers_of(resnet, decay)
    assert layers["layer0"] == (pytest.approx(0.9 ** 9), ["bn1", "conv1"])
    assert layers["layer3"][1] == ["layer2.0.bn1", "layer2.0.bn2", "layer2.0.conv1", "layer2.0.conv2",
                                   "layer2.0.downsample.0", "layer2.0.downsample.1"]
    assert layers["layer9"] == (1.0, ["fc"])
    assert decay.torchtk_report[0] == "layer_decay 0.9 over 10 layers (resnet): lr x0.3874 (layer 0) to x1 (layer 9)"


def test_layer_decay_by_explicit_layers():
    model = small_cnn()
    layers = layers_of(model, policy("layer_decay", decay=0.5, layers=[["conv1", "bn1"], ["conv2", "norm"]]))
    assert layers == {"layer0": (0.25, ["bn1", "conv1"]), "layer1": (0.5, ["conv2", "norm"]),
                      "layer2": (1.0, ["fc", "ln"])}  # unnamed parameters: the top layer
    with pytest.raises(PatternError, match=r"'conv1.bias' is in layers\[0\] and layers\[1\]"):
        policy("layer_decay", decay=0.5, layers=[["conv1"], ["*.bias"]])(model)
    with pytest.raises(PatternError, match=r"layer_decay layers\[1\]: 'cnov2' \(closest module names: conv2"):
        policy("layer_decay", decay=0.5, layers=[["conv1"], ["cnov2"]])(model)


def test_layer_decay_with_no_decay_in_a_run(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["model"]["params"]["hidden"] = [8, 8]  # top-level layers 0, 2, 4 with parameters
    spec["optimizer"] = {"name": "adamw", "params": {"lr": 0.01, "weight_decay": 0.05}}
    spec["freeze"] = [{"name": "layer_decay", "params": {"decay": 0.5}}, "no_decay"]
    spec["trainer"]["epochs"] = 1
    plan = compute_plan(spec)
    assert plan.groups == ["layer0", "layer0+no_decay", "layer1", "layer1+no_decay", "layer2", "layer2+no_decay"]
    first = plan.updates[0]
    assert first.lr == pytest.approx([0.0025, 0.0025, 0.005, 0.005, 0.01, 0.01])
    assert first.weight_decay == [0.05, 0.0, 0.05, 0.0, 0.05, 0.0]
    row = torchtk.train(spec).history[0]
    assert row["lr/layer0+no_decay"] == pytest.approx(0.0025) and row["lr/layer2"] == pytest.approx(0.01)
