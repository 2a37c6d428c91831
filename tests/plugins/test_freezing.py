"""Freeze policies: patterns and their reports, freeze_until, feature_extract, BatchNorm
modes, and gradual unfreezing (unfreeze_at) in runs, plans and resumed runs."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import torchtk
from torchtk.core.errors import UserInputError
from torchtk.core.plan import compute_plan
from torchtk.plugins.freezing import PatternError
from torchtk.testing import check_plugin

def policy(name, **params):
    return torchtk.registry.create("freeze", name, **params)


def trainable(model):
    return [name for name, p in model.named_parameters() if p.requires_grad]


def bn_net():
    """A tiny net for the rings data with both BatchNorm kinds: stem (Conv2d + BatchNorm2d),
    body (Linear + BatchNorm1d), fc."""
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Unflatten(1, (2, 1, 1)), nn.Conv2d(2, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten()),
        body=nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU()),
        fc=nn.Linear(8, 1)))


def bn_spec(small_spec, freeze):
    spec = copy.deepcopy(small_spec)
    spec["model"] = {"import": "tests.plugins.test_freezing:bn_net"}
    spec["freeze"] = freeze
    spec["trainer"]["epochs"] = 2
    return spec


def initial_state(spec):
    """The model's state right after the freeze policies, as the run builds it."""
    from torchtk.core.assembly import build_parts
    from torchtk.core.distributed import SingleProcess
    from torchtk.core.spec import load_resolved

    parts = build_parts(load_resolved(copy.deepcopy(spec)), SingleProcess(torch.device("cpu")), upto="freeze")
    return {k: v.clone() for k, v in parts.model.state_dict().items()}


def last_checkpoint(result):
    return torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_both_plugins_conform_and_are_listed(tk):
    registry = torchtk.registry
    assert check_plugin(registry, "torchtk.plugins.freezing") == []
    assert check_plugin(registry, "torchtk.plugins.groups") == []
    listed = tk("list", "freeze")
    assert listed.exit_code == 0
    for name in ("feature_extract", "freeze", "freeze_until", "unfreeze_at", "layer_lr", "no_decay", "layer_decay"):
        assert name in listed.stdout


# -- patterns ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, kind, frozen", [
    ("body", "module", ["body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"]),
    ("fc.weight", "parameter", ["fc.weight"]),
    ("stem.", "prefix", ["stem.1.weight", "stem.1.bias", "stem.2.weight", "stem.2.bias"]),
    ("*.bias", "glob", ["stem.1.bias", "stem.2.bias", "body.0.bias", "body.1.bias", "fc.bias"]),
    ("body.?", "glob", ["body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"]),
    ("re:(stem|body)\\.1", "regex", ["stem.1.weight", "stem.1.bias", "body.1.weight", "body.1.bias"]),
    ("re:.*\\.weight", "regex", ["stem.1.weight", "stem.2.weight", "body.0.weight", "body.1.weight", "fc.weight"]),
])
def test_a_pattern_freezes_what_it_names_and_reports_it(pattern, kind, frozen):
    model = bn_net()
    freeze = policy("freeze", modules=[pattern])
    assert freeze(model) is None
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == frozen
    numbers = sum(p.numel() for n, p in model.named_parameters() if n in frozen)
    assert freeze.torchtk_report[0] == (f"freeze {pattern!r} ({kind}): {len(frozen)} tensor{'s' * (len(frozen) > 1)}, "
                                        f"{numbers:,} numbers")


def test_a_regex_matches_whole_names_only():
    model = bn_net()
    with pytest.raises(PatternError, match="'re:ody' \\(closest module names: body.*matches no module or parameter name"):
        policy("freeze", modules=["re:ody"])(model)  # a substring search would have matched 'body'
    with pytest.raises(PatternError, match="not a valid regex"):
        policy("freeze", modules=["re:(body"])(model)


def test_a_pattern_that_matches_nothing_names_the_closest_modules():
    model = torch.nn.Sequential(OrderedDict(layer1=nn.Linear(2, 2), layer2=nn.Linear(2, 2), head=nn.Linear(2, 1)))
    with pytest.raises(PatternError) as error:
        policy("freeze", modules=["layer1", "layr2.*", "haed"])(model)
    message = str(error.value)
    assert "'layr2.*' (closest module names: layer2" in message and "'haed' (closest module names: head)" in message
    assert "match no module or parameter name; top-level modules: ['head', 'layer1', 'layer2']" in message
    assert all(p.requires_grad for p in model.parameters())  # nothing half-applied


def test_a_spec_pattern_that_matches_nothing_is_an_input_error_naming_the_policy(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = [{"name": "freeze", "params": {"modules": ["0.wieght"]}}]
    with pytest.raises(UserInputError, match=r"freeze\[0\]: applying 'freeze' failed: freeze: '0\.wieght' \(closest "
                                             r"parameter names: 0\.weight, 2\.weight\)"):
        torchtk.train(spec)


def test_reports_reach_train_log(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["trainer"]["epochs"] = 1
    spec["freeze"] = [{"name": "freeze", "params": {"modules": ["0.weight", "re:0\\.bias"]}}]
    log = (torchtk.train(spec).run_dir / "train.log").read_text()
    assert "freeze[0]: freeze '0.weight' (parameter): 1 tensor, 32 numbers" in log
    assert "freeze[0]: freeze 're:0\\\\.bias' (regex): 1 tensor, 16 numbers" in log
    assert "freeze[0]: freeze in all: 2 tensors, 48 numbers" in log


# -- freeze_until, feature_extract ----------------------------------------------------------------------


def test_freeze_until_freezes_everything_up_to_and_including_a_module():
    import torchvision

    model = torchvision.models.resnet18(num_classes=4)
    until = policy("freeze_until", module="layer2")
    until(model)
    first_trainable = trainable(model)[0]
    assert first_trainable == "layer3.0.conv1.weight" and trainable(model)[-2:] == ["fc.weight", "fc.bias"]
    assert not model.layer2[1].bn2.training and model.layer3[0].bn1.training  # bn eval for the frozen part
    assert "freeze_until 'layer2': 30 tensors" in until.torchtk_report[0]
    assert "from 'conv1.weight' to 'layer2.1.bn2.bias'" in until.torchtk_report[0]

    model = bn_net()
    policy("freeze_until", module="body.0.weight", bn="train")(model)  # a parameter name works too
    assert trainable(model) == ["body.0.bias", "body.1.weight", "body.1.bias", "fc.weight", "fc.bias"]
    assert model.stem[2].training  # bn train: statistics keep updating
    with pytest.raises(PatternError, match=r"'bdy' is no module or parameter name \(closest module names: body"):
        policy("freeze_until", module="bdy")(model)


def test_freeze_until_counts_the_roots_own_parameters_first():
    class WithToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(2, 4)
            self.token = nn.Parameter(torch.zeros(4))  # a parameter of the root, like a ViT's class_token
            self.blocks = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
            self.head = nn.Linear(4, 1)

    model = WithToken()
    policy("freeze_until", module="embed")(model)
    assert trainable(model) == ["blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
                                "head.weight", "head.bias"]


def test_feature_extract_trains_the_head_that_find_head_names():
    import torchvision

    model = torchvision.models.vgg11(num_classes=4)  # the head is classifier.6, not all of classifier
    extract = policy("feature_extract")
    extract(model)
    assert trainable(model) == ["classifier.6.weight", "classifier.6.bias"]
    assert extract.torchtk_report[0] == "feature_extract trains 'classifier.6' (module): 2 tensors, 16,388 numbers"
    model = torchvision.models.googlenet(num_classes=4, aux_logits=True, init_weights=False)
    policy("feature_extract")(model)
    assert trainable(model) == ["aux1.fc2.weight", "aux1.fc2.bias", "aux2.fc2.weight", "aux2.fc2.bias",
                                "fc.weight", "fc.bias"]


def test_feature_extract_resnet18_keeps_the_backbone_bit_identical(small_spec, resnet_factory):
    pytest.importorskip("torchvision")
    spec = copy.deepcopy(small_spec)
    spec["model"] = {"import": "resnet_on_rings:make", "params": {}}
    spec["freeze"] = ["feature_extract"]
    spec["trainer"]["epochs"] = 1
    spec["data"]["params"] = {"n_positive": 40, "n_negative": 40}
    spec["data"]["batch_size"] = 20
    spec["loss"] = "focal"
    before = initial_state(spec)
    result = torchtk.train(spec)
    after = last_checkpoint(result)
    optimizer_params = [p for g in after["optimizer"]["param_groups"] for p in g["params"]]
    assert len(optimizer_params) == 2  # fc.weight and fc.bias only
    for key, tensor in before.items():
        if key.startswith("net.fc."):
            assert not torch.equal(tensor, after["model"][key]), key
        else:  # every backbone tensor and every running statistic
            assert torch.equal(tensor, after["model"][key]), key
    assert "freeze[0]: feature_extract trains 'net.fc' (module): 2 tensors, 2,052 numbers" in \
        (result.run_dir / "train.log").read_text()


@pytest.fixture
def resnet_factory(tmp_path, monkeypatch):
    (tmp_path / "resnet_on_rings.py").write_text(
        "import torch, torchvision\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.net = torchvision.models.resnet18(num_classes=4)\n"
        "        self.net.fc = torch.nn.Linear(512, 4)\n"
        "    def forward(self, x):\n"
        "        image = x[:, :, None, None].repeat(1, 1, 32, 32)[:, [0, 1, 0]]\n"
        "        return self.net(image)[:, :1]\n"
        "def make():\n"
        "    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))


# -- BatchNorm modes ----------------------------------------------------------------------------------------


def test_bn_eval_keeps_statistics_and_weights_of_the_frozen_part(small_spec):
    spec = bn_spec(small_spec, [{"name": "freeze", "params": {"modules": ["stem", "body"]}}])
    before = initial_state(spec)
    result = torchtk.train(spec)
    after = last_checkpoint(result)["model"]
    for key in ("stem.1.weight", "stem.2.weight", "stem.2.running_mean", "stem.2.running_var",
                "body.1.running_mean", "body.1.num_batches_tracked"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["fc.weight"], after["fc.weight"])


def test_bn_train_updates_statistics_but_not_weights(small_spec):
    spec = bn_spec(small_spec, [{"name": "freeze", "params": {"modules": ["stem", "body"], "bn": "train"}}])
    before = initial_state(spec)
    after = last_checkpoint(torchtk.train(spec))["model"]
    assert torch.equal(before["stem.2.weight"], after["stem.2.weight"])
    assert not torch.equal(before["stem.2.running_mean"], after["stem.2.running_mean"])
    assert not torch.equal(before["body.1.running_var"], after["body.1.running_var"])


def test_freeze_norm_stats_still_works_and_maps_to_bn(small_spec):
    model = bn_net()
    policy("freeze", modules=["stem"], freeze_norm_stats=False)(model)
    assert model.stem[2].training
    model = bn_net()
    policy("freeze", modules=["stem"], freeze_norm_stats=True)(model)
    assert not model.stem[2].training
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = [{"name": "freeze", "params": {"modules": ["0."], "bn": "eval", "freeze_norm_stats": True}}]
    with pytest.raises(UserInputError, match="give bn or freeze_norm_stats, not both"):
        torchtk.load_spec(spec)


def test_bn_frozen_replaces_batchnorm2d_by_frozen_batchnorm(small_spec):
    from torchvision.ops import FrozenBatchNorm2d

    model = bn_net().eval()
    model(torch.randn(16, 2))
    with torch.no_grad():
        model.stem[2].running_mean.uniform_()
        model.stem[2].weight.uniform_()
    inputs = torch.randn(5, 2)
    expected = model(inputs)
    freeze = policy("freeze", modules=["stem", "body"], bn="frozen")
    freeze(model)
    assert isinstance(model.stem[2], FrozenBatchNorm2d)  # BatchNorm2d replaced
    assert isinstance(model.body[1], nn.BatchNorm1d) and not model.body[1].training  # 1-d: eval instead
    assert torch.allclose(model.eval()(inputs), expected, atol=1e-6)  # same function
    assert "bn frozen: 1 BatchNorm2d layer replaced by FrozenBatchNorm2d" in freeze.torchtk_report
    assert "bn eval: 1 BatchNorm layer in eval mode, running statistics fixed (not BatchNorm2d: eval instead)" in \
        freeze.torchtk_report

    spec = bn_spec(small_spec, [{"name": "freeze", "params": {"modules": ["stem"], "bn": "frozen"}}])
    before = initial_state(spec)
    after = last_checkpoint(torchtk.train(spec))["model"]
    assert "stem.2.num_batches_tracked" not in after
    for key in ("stem.2.weight", "stem.2.bias", "stem.2.running_mean", "stem.2.running_var"):
        assert torch.equal(before[key], after[key]), key


# -- gradual unfreezing ------------------------------------------------------------------------------------------


def unfreeze_spec(small_spec, epochs=4, **stage):
    spec = copy.deepcopy(small_spec)
    spec["model"]["params"]["hidden"] = [8, 8]
    spec["model"]["params"]["dropout"] = 0.1  # the resumed run must restore the RNG too
    spec["scheduler"] = {"name": "lambda", "params": {"lr_lambda": "0.8 ** epoch"}}  # lr_lambdas must grow too
    spec["freeze"] = [{"name": "unfreeze_at", "params": {"stages": [{"epoch": 2, "modules": ["0"], **stage}]}}]
    spec["trainer"]["epochs"] = epochs
    return spec


def lr_columns(history):
    return [{k: v for k, v in row.items() if k.startswith("lr")} for row in history]


def test_unfreeze_at_adds_its_parameters_at_its_epoch_with_its_lr(small_spec):
    spec = unfreeze_spec(small_spec, epochs=3, lr_factor=0.5)
    before = initial_state(spec)
    first = torchtk.train(copy.deepcopy(spec), overrides=["trainer.epochs=1"])
    assert torch.equal(last_checkpoint(first)["model"]["0.weight"], before["0.weight"])  # frozen in epoch 1
    result = torchtk.train(spec)
    lrs = lr_columns(result.history)
    assert lrs[0] == {"lr/default": 0.01}  # a group joins later: per-group columns from the first epoch
    assert lrs[1] == {"lr/default": pytest.approx(0.008), "lr/unfreeze_epoch2": pytest.approx(0.004)}
    assert lrs[2] == {"lr/default": pytest.approx(0.0064), "lr/unfreeze_epoch2": pytest.approx(0.0032)}
    checkpoint = last_checkpoint(result)
    groups = checkpoint["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["default", "unfreeze_epoch2"]
    assert len(groups[1]["params"]) == 2 and groups[1]["initial_lr"] == pytest.approx(0.005)
    assert not torch.equal(checkpoint["model"]["0.weight"], before["0.weight"])  # trains from epoch 2
    log = (result.run_dir / "train.log").read_text()
    assert "freeze[0]: unfreeze_at epoch 2 (unfreeze_epoch2): '0' (module): 2 tensors, 24 numbers" in log
    assert "unfreeze_at epoch 2: 'unfreeze_epoch2' joins the optimizer: 2 tensors, 24 numbers, lr 0.004 " \
           "(base lr 0.005)" in log


def test_unfreeze_at_with_an_absolute_lr_follows_the_schedule(small_spec):
    spec = unfreeze_spec(small_spec, epochs=3, lr=0.1, name="first")
    spec["model"]["params"]["dropout"] = 0.0
    lrs = lr_columns(torchtk.train(spec).history)
    assert lrs[1]["lr/first"] == pytest.approx(0.1 * 0.8) and lrs[2]["lr/first"] == pytest.approx(0.1 * 0.64)


def test_a_resumed_run_after_the_unfreeze_epoch_continues_identically(small_spec):
    spec = unfreeze_spec(small_spec, epochs=4, lr_factor=0.5)
    straight = torchtk.train(copy.deepcopy(spec))
    partial = torchtk.train(copy.deepcopy(spec), overrides=["trainer.epochs=3"])  # stops after the unfreeze epoch
    resumed = torchtk.train(copy.deepcopy(spec), resume=partial.run_dir)
    assert resumed.run_dir == partial.run_dir
    assert resumed.history == straight.history
    final, again = last_checkpoint(straight), last_checkpoint(resumed)
    for key, tensor in final["model"].items():
        assert torch.equal(tensor, again["model"][key]), key
    assert final["optimizer"]["param_groups"] == again["optimizer"]["param_groups"]


def test_tk_plan_shows_the_group_from_its_epoch(small_spec, tk, spec_file, tmp_path):
    spec = unfreeze_spec(small_spec, epochs=3, lr_factor=0.5)
    plan = compute_plan(spec)
    per_epoch = plan.run.steps_per_epoch
    assert plan.groups == ["default", "unfreeze_epoch2"] and plan.joins == {"default": 1, "unfreeze_epoch2": 2}
    assert plan.updates[per_epoch - 1].lr == [0.01, 0.0]  # not in the optimizer yet
    assert plan.updates[per_epoch].lr == pytest.approx([0.008, 0.004])
    history = torchtk.train(spec).history
    assert history[-1]["lr/unfreeze_epoch2"] == pytest.approx(plan.updates[-1].lr[1])
    result = tk("plan", spec_file(spec), "-o", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["group_epochs"] == {"default": 1, "unfreeze_epoch2": 2}
    shown = tk("plan", spec_file(spec), "-o", tmp_path / "lr.png")
    assert "lr unfreeze_epoch2" in shown.stdout
    assert "note: unfreeze_epoch2: joins the optimizer at epoch 2; its lr reads 0 before (frozen)" in \
        " ".join(shown.stdout.split())


def test_feature_extract_then_unfreeze_at_with_a_head_lr(small_spec):
    spec = unfreeze_spec(small_spec, epochs=2, lr_factor=0.1)
    spec["model"]["params"]["dropout"] = 0.0
    spec["freeze"] = ["feature_extract", spec["freeze"][0],
                      {"name": "layer_lr", "params": {"groups": [{"modules": ["4"], "lr": 0.05, "name": "head"}]}}]
    lrs = lr_columns(torchtk.train(spec).history)
    assert lrs[0] == {"lr/head": 0.05}  # only the head trains: no default group
    assert lrs[1] == {"lr/head": pytest.approx(0.05 * 0.8), "lr/unfreeze_epoch2": pytest.approx(0.1 * 0.01 * 0.8)}


def test_unfreeze_at_skips_parameters_that_train_already(small_spec):
    spec = unfreeze_spec(small_spec, epochs=2)
    spec["model"]["params"]["dropout"] = 0.0
    spec["freeze"].append({"name": "feature_extract", "params": {"train": ["0", "4"]}})  # 0 trains from the start
    result = torchtk.train(spec)
    assert "lr/unfreeze_epoch2" not in result.history[-1]
    assert "every parameter of 'unfreeze_epoch2' trains already; no group added" in \
        (result.run_dir / "train.log").read_text()


def test_unfreeze_at_params_are_checked(small_spec):
    model = bn_net()
    stages = [{"epoch": 2, "modules": ["body"]}, {"epoch": 3, "modules": ["body.0"]}]
    with pytest.raises(PatternError, match="stage 1 \\(epoch 3\\) and stage 0 both hold 'body.0.weight'"):
        policy("unfreeze_at", stages=stages)(model)
    bad = [({"epoch": 1, "modules": ["0"]}, "greater than or equal to 2"),
           ({"epoch": 2, "modules": ["0"], "lr": 0.1, "lr_factor": 0.5}, "give lr or lr_factor, not both"),
           ({"epoch": 2, "modules": []}, "at least 1 item")]
    for stage, message in bad:
        spec = copy.deepcopy(small_spec)
        spec["freeze"] = [{"name": "unfreeze_at", "params": {"stages": [stage]}}]
        with pytest.raises(UserInputError, match=message):
            torchtk.load_spec(spec)
    spec["freeze"] = [{"name": "unfreeze_at", "params": {"stages": [{"epoch": 2, "modules": ["0"]},
                                                                    {"epoch": 2, "modules": ["2"]}]}}]
    with pytest.raises(UserInputError, match="two stages make the group 'unfreeze_epoch2'"):
        torchtk.load_spec(spec)


@pytest.mark.parametrize("scheduler", [
    {"name": "step", "params": {"step_size": 1, "gamma": 0.5}},
    {"name": "cosine_annealing", "params": {"T_max": 4}},
    {"name": "warmup", "params": {"length": 3, "then": {"name": "exponential", "params": {"gamma": 0.9}}}},
    {"name": "one_cycle", "interval": "step", "params": {"max_lr": 0.1}},
    {"name": "sequential", "params": {"schedulers": [{"name": "constant", "params": {"factor": 0.5, "total_iters": 2}},
                                                     {"name": "exponential", "params": {"gamma": 0.9}}],
                                      "milestones": [3]}},
])
def test_the_schedulers_drive_a_joined_group_like_the_default_group(small_spec, scheduler):
    spec = unfreeze_spec(small_spec, epochs=4, lr_factor=0.25)
    spec["scheduler"] = scheduler
    plan = compute_plan(spec)
    ratios = {round(u.lr[1] / u.lr[0], 12) for u in plan.updates if u.epoch >= 2}
    assert ratios == {0.25}
    history = torchtk.train(spec).history
    assert all(row["lr/unfreeze_epoch2"] == pytest.approx(0.25 * row["lr/default"]) for row in history[1:])


def test_resnet18_by_name_with_a_new_head_and_feature_extract(small_spec):
    """The issue's case as a user writes it: resnet18, num_classes 4, feature_extract."""
    spec = copy.deepcopy(small_spec)
    spec.update(model={"name": "resnet18", "params": {"num_classes": 4}}, freeze=["feature_extract"],
                loss="cross_entropy", metrics=["accuracy"], callbacks=[], scheduler=[])
    spec["data"] = {"name": "fake_images", "params": {"n_samples": 24, "image_size": [3, 32, 32], "num_classes": 4},
                    "batch_size": 8, "val_split": 0.25}
    spec["trainer"]["epochs"] = 1
    before = initial_state(spec)
    result = torchtk.train(spec)
    after = last_checkpoint(result)
    (group,) = after["optimizer"]["param_groups"]
    assert len(group["params"]) == 2 and group["name"] == "default"  # fc.weight and fc.bias only
    for key, tensor in before.items():
        if key.startswith("fc."):
            assert not torch.equal(tensor, after["model"][key]), key
        else:  # every backbone tensor and every BatchNorm running statistic
            assert torch.equal(tensor, after["model"][key]), key
    assert "feature_extract trains 'fc' (module): 2 tensors, 2,052 numbers" in (result.run_dir / "train.log").read_text()
