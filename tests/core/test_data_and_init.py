"""The core's side of fine-tuning on real data: init after the model, per-split transforms,
a dataset's own splits and class names, build reports in train.log, and policies with
run hooks (gradual unfreezing) that add param groups and resume identically."""

from __future__ import annotations

import json
import types

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, Params, Splits, hookimpl
from torchtk.core.errors import RunInterrupted, UserInputError
from torchtk.testing import registry_with
from pydantic import Field


class Shift:
    """A picklable transform adding ``amount`` to every input."""

    def __init__(self, amount):
        self.amount = amount

    def __call__(self, x):
        return x + self.amount


class ShiftParams(Params):
    """Add a constant to each input."""

    amount: float = Field(description="What to add.")


class Points(torch.utils.data.Dataset):
    """Rings-like points with a class name per label; records the inputs it was asked for."""

    classes = ["inner", "outer"]

    def __init__(self, n, offset=0.0):
        generator = torch.Generator().manual_seed(n)
        self.x = torch.randn(n, 2, generator=generator) + offset
        self.y = (self.x.norm(dim=1, keepdim=True) > 1).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class Marker(torch.nn.Module):
    """Passes inputs through, remembering the largest absolute input seen in train and in eval mode."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        self.seen = {True: 0.0, False: 0.0}
        self.torchtk_loaded_parameters = frozenset({"net.0.weight"})
        self.torchtk_report = ["1 tensor loaded from nowhere (test)"]

    def forward(self, x):
        self.seen[self.training] = max(self.seen[self.training], float(x.abs().max()))
        return self.net(x)


class Fill:
    """An init filling every parameter it may touch with ``value``."""

    def __init__(self, value):
        self.value = value
        self.calls = []

    def __call__(self, model, loaded):
        names = [n for n, _ in model.named_parameters() if n not in loaded]
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in names:
                    parameter.fill_(self.value)
        self.calls.append(loaded)
        return names


class UnfreezeParams(Params):
    """Freeze module ``net.0`` and add it back as a group at ``epoch``."""

    epoch: int = Field(2, ge=1, description="Epoch at which net.0 joins the optimizer.")
    lr: float = Field(1e-3, gt=0, description="Its lr.")


class UnfreezeAt:
    """A policy with a run hook: net.0 is frozen, then joins the optimizer as a new group."""

    def __init__(self, params):
        self.epoch, self.lr, self.added = params.epoch, params.lr, False

    def __call__(self, model):
        self.model = model
        for p in model.net[0].parameters():
            p.requires_grad_(False)
        self.torchtk_report = ["net.0: 2 tensors frozen until epoch %d" % self.epoch]

    def _add(self, optimizer):
        for p in self.model.net[0].parameters():
            p.requires_grad_(True)
        optimizer.add_param_group({"params": list(self.model.net[0].parameters()), "lr": self.lr, "name": "net.0"})
        self.added = True

    @hookimpl
    def on_epoch_start(self, state):
        if state.epoch == self.epoch and not self.added:
            self._add(state.optimizer)

    def state_dict(self):
        return {"added": self.added}

    def load_state_dict(self, state):
        self.was_added = state["added"]

    @hookimpl
    def on_load_checkpoint(self, state, checkpoint):  # before the optimizer state loads
        if self.was_added and not self.added:
            self._add(state.optimizer)


def data_plugin(store):
    module = types.ModuleType("data_plugin")

    @hookimpl
    def register_components(register):
        register(Component("dataset", "points", "Points with their own splits.", params=NoParams))
        register(Component("model", "marker", "A model that records its inputs.", params=NoParams))
        register(Component("transform", "shift", "Add a constant.", params=ShiftParams))
        register(Component("init", "fill", "Fill parameters.", params=ShiftParams))
        register(Component("freeze", "unfreeze_net0", "Unfreeze net.0 later.", params=UnfreezeParams))

    @hookimpl
    def make_dataset(name, params):
        return Splits(train=Points(400), val=Points(100))

    @hookimpl
    def make_model(name, params):
        store["model"] = Marker()
        return store["model"]

    @hookimpl
    def make_transform(name, params):
        return Shift(params.amount)

    @hookimpl
    def make_init(name, params):
        store["init"] = Fill(params.amount)
        return store["init"]

    @hookimpl
    def freeze_policy(name, params):
        store["policy"] = UnfreezeAt(params)
        return store["policy"]

    for name in ("register_components", "make_dataset", "make_model", "make_transform", "make_init",
                 "freeze_policy"):
        setattr(module, name, locals()[name])
    return module


def points_spec(small_spec, **changes):
    spec = dict(small_spec, model="marker", loss="bce_with_logits", callbacks=[], scheduler=[])
    spec["data"] = {"name": "points", "batch_size": 50}
    spec.update(changes)
    return spec


def test_transforms_apply_to_their_split_only(small_spec):
    store = {}
    spec = points_spec(small_spec)
    spec["data"]["transforms"] = {"train": [{"name": "shift", "params": {"amount": 100.0}}],
                                  "val": [{"name": "shift", "params": {"amount": -1000.0}}]}
    spec["trainer"]["epochs"] = 1
    torchtk.train(spec, registry=registry_with(data_plugin(store)))
    seen = store["model"].seen
    assert 90 < seen[True] < 110  # training inputs were shifted by +100 only
    assert seen[False] > 990  # validation (and the probe) by -1000 only


def test_a_dataset_s_own_splits_and_class_names_are_kept(small_spec):
    spec = points_spec(small_spec)
    spec["trainer"]["epochs"] = 1
    result = torchtk.train(spec, registry=registry_with(data_plugin({})))
    assert json.loads((result.run_dir / "metrics.json").read_text())["classes"] == ["inner", "outer"]
    payload = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert payload["classes"] == ["inner", "outer"]
    assert payload["step"] == 8  # 400 training samples of the dataset's own train split, batches of 50


def test_init_runs_after_the_model_and_skips_loaded_parameters(small_spec):
    store = {}
    spec = points_spec(small_spec, init=[{"name": "fill", "params": {"amount": 0.5}}])
    spec["trainer"]["epochs"] = 1
    spec["optimizer"] = {"name": "sgd", "params": {"lr": 1e-30}}  # far below float32 resolution at 0.5
    result = torchtk.train(spec, registry=registry_with(data_plugin(store)))
    assert store["init"].calls == [frozenset({"net.0.weight"})]
    weights = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.all(weights["net.0.bias"] == 0.5) and torch.all(weights["net.2.weight"] == 0.5)
    assert not torch.all(weights["net.0.weight"] == 0.5)  # loaded from weights: left alone
    log = (result.run_dir / "train.log").read_text()
    assert "model: 1 tensor loaded from nowhere (test)" in log and "init[0]: fill initialised 3 tensors" in log


def test_a_policy_with_run_hooks_adds_its_group_and_resumes_identically(small_spec):
    store = {}
    registry = registry_with(data_plugin(store))
    spec = points_spec(small_spec, freeze=[{"name": "unfreeze_net0", "params": {"epoch": 2, "lr": 0.001}}])
    spec["trainer"]["epochs"] = 3
    straight = torchtk.train(spec, registry=registry)
    assert [set(k for k in row if k.startswith("lr")) for row in straight.history] == [
        {"lr/default"}, {"lr/default", "lr/net.0"}, {"lr/default", "lr/net.0"}]  # the same columns all run
    assert "freeze[0]: net.0: 2 tensors frozen until epoch 2" in (straight.run_dir / "train.log").read_text()
    partial = torchtk.train(spec, registry=registry, overrides=["trainer.epochs=2"])
    resumed = torchtk.train(spec, registry=registry, resume=partial.run_dir)
    assert resumed.history == straight.history


def test_transform_and_init_kinds_are_listed_and_validated(small_spec):
    registry = registry_with(data_plugin({}))
    assert "shift" in registry.names("transform") and "fill" in registry.names("init")
    spec = points_spec(small_spec, init=[{"name": "fill", "params": {"amount": "x"}}])
    with pytest.raises(UserInputError, match=r"init\[0\]\.params\.amount"):
        torchtk.load_spec(spec, registry=registry)
    spec = points_spec(small_spec)
    spec["data"]["transforms"] = {"train": ["shfit"]}
    with pytest.raises(UserInputError, match=r"data\.transforms\.train\[0\]\.name: unknown transform 'shfit'"):
        torchtk.load_spec(spec, registry=registry)


def test_images_of_different_sizes_without_a_resize_are_an_input_error(small_spec, tmp_path):
    from PIL import Image

    for label, size in (("a", 6), ("b", 8)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for index in range(4):
            Image.new("RGB", (size, size), (index * 40, 0, 0)).save(tmp_path / "imgs" / label / f"{index}.png")
    spec = dict(small_spec, model={"name": "simple_cnn", "params": {"in_channels": 3, "num_classes": 2}},
                loss="cross_entropy", metrics=[], callbacks=[], scheduler=[])
    spec["data"] = {"name": "image_folder", "params": {"root": str(tmp_path / "imgs")}, "batch_size": 4,
                    "val_split": 0.5}
    with pytest.raises(UserInputError, match="different sizes.*resize"):
        torchtk.train(spec)
