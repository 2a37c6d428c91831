"""Every hookspec is documented like pytest's, and every hook has a test (datasette's rule)."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

import torchtk
from torchtk.core import hookspecs
from torchtk.core.components import KINDS
from torchtk.core.plugins import PluginHost
from torchtk.core.state import Precision, RunInfo

HOOKS = PluginHost.hook_names()
CONTRACT_HOOKS = {"make_loss", "make_scheduler", "freeze_policy", "precision_context", "on_step"}

# hook -> the test that exercises it ("module::function")
HOOK_TESTS = {
    "register_components": "tests.core.test_registry::test_third_party_plugin_is_listed_with_provenance",
    "make_loss": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "make_scheduler": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "freeze_policy": "tests.core.test_hookspecs::test_freeze_policy_freezes_by_prefix",
    "precision_context": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "make_model": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "make_dataset": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "make_optimizer": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "make_metric": "tests.core.test_hookspecs::test_provider_hook_builds_a_builtin",
    "make_callback": "tests.core.test_engine::test_callbacks_run_in_spec_order_and_only_when_listed",
    "on_fit_start": "tests.core.test_engine::test_callbacks_run_in_spec_order_and_only_when_listed",
    "on_step": "tests.core.test_engine::test_callbacks_run_in_spec_order_and_only_when_listed",
    "on_step_end": "tests.core.test_engine::test_callbacks_run_in_spec_order_and_only_when_listed",
    "on_epoch_end": "tests.core.test_engine::test_callbacks_run_in_spec_order_and_only_when_listed",
    "on_fit_end": "tests.core.test_engine::test_callbacks_run_in_spec_order_and_only_when_listed",
    "make_init": "tests.core.test_data_and_init::test_init_runs_after_the_model_and_skips_loaded_parameters",
    "make_transform": "tests.core.test_data_and_init::test_transforms_apply_to_their_split_only",
    "on_epoch_start": "tests.core.test_lifecycle_hooks::test_every_lifecycle_hook_is_called_in_order",
    "on_validation_start": "tests.core.test_lifecycle_hooks::test_every_lifecycle_hook_is_called_in_order",
    "on_validation_end": "tests.core.test_lifecycle_hooks::test_every_lifecycle_hook_is_called_in_order",
    "on_save_checkpoint": "tests.core.test_lifecycle_hooks::test_every_lifecycle_hook_is_called_in_order",
    "on_load_checkpoint":
        "tests.core.test_lifecycle_hooks::test_on_load_checkpoint_runs_on_resume_after_the_core_restored_the_state",
    "on_exception":
        "tests.core.test_lifecycle_hooks::test_on_exception_sees_what_ended_the_run_and_on_fit_end_is_not_called",
}


def test_the_five_contract_hooks_exist():
    assert CONTRACT_HOOKS <= set(HOOKS)


def test_every_kind_is_built_by_a_declared_hook():
    assert {kind.hook for kind in KINDS.values()} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_docstring_documents_every_argument_and_the_return_value(hook):
    function = getattr(hookspecs, hook)
    doc = inspect.getdoc(function) or ""
    for argument in inspect.signature(function).parameters:
        assert f":param {argument}:" in doc, f"{hook}: argument {argument!r} is not documented"
    assert ":returns:" in doc and "versionadded" in doc
    assert "called" in doc.lower(), f"{hook}: say when it is called"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert hook in HOOK_TESTS, f"add a test for {hook} and list it in HOOK_TESTS"
    module_name, function = HOOK_TESTS[hook].split("::")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function, None)), HOOK_TESTS[hook]
    assert hook in inspect.getsource(getattr(module, function)) or hook in inspect.getsource(module)


def test_provider_hook_builds_a_builtin():
    create = torchtk.registry.create
    model = create("model", "mlp", in_features=2, hidden=[4], out_features=1)
    assert isinstance(model, torch.nn.Module)  # make_model
    dataset = create("dataset", "rings", n_positive=5, n_negative=7)  # make_dataset
    x, y = dataset[0]
    assert len(dataset) == 12 and x.shape == (2,) and y.shape == (1,)
    loss = create("loss", "bce_with_logits", pos_weight=[2.0])  # make_loss
    assert torch.isclose(loss(torch.zeros(1, 1), torch.ones(1, 1)), 2 * torch.log(torch.tensor(2.0)))
    optimizer = create("optimizer", "adamw", parameters=model.parameters(), lr=0.1)  # make_optimizer
    assert optimizer.param_groups[0]["lr"] == 0.1
    scheduler = create("scheduler", "step", optimizer=optimizer, step_size=1, gamma=0.5,
                       run=RunInfo(epochs=1, steps_per_epoch=1, batches_per_epoch=1))  # make_scheduler
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    precision = create("precision", "bf16", device=torch.device("cpu"))  # precision_context
    assert isinstance(precision, Precision) and precision.scaler is None
    with precision.autocast():
        assert model(torch.zeros(1, 2)).dtype == torch.bfloat16
    fp16 = create("precision", "fp16", device=torch.device("cpu"))
    assert isinstance(fp16.scaler, torch.amp.GradScaler)
    metric = create("metric", "accuracy")  # make_metric
    metric.update(torch.tensor([[2.0], [-1.0], [3.0]]), torch.tensor([[1.0], [0.0], [0.0]]))
    assert metric.compute() == pytest.approx(2 / 3)


def test_freeze_policy_freezes_by_prefix():
    model = torchtk.registry.create("model", "mlp", in_features=2, hidden=[4, 4], out_features=1)
    policy = torchtk.registry.create("freeze", "freeze", modules=["0.", "2."])  # freeze_policy
    assert policy(model) is None
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["4.weight", "4.bias"]
    with pytest.raises(ValueError, match="top-level modules"):
        torchtk.registry.create("freeze", "freeze", modules=["backbone."])(model)


def test_frozen_parameters_do_not_change_during_training(small_spec):
    small_spec["model"]["params"]["hidden"] = [8, 8]
    small_spec["freeze"] = [{"name": "freeze", "params": {"modules": ["0."]}}]
    small_spec["loss"] = "bce_with_logits"
    result = torchtk.train(small_spec)
    torch.manual_seed(small_spec["seed"])
    before = torchtk.registry.create("model", "mlp", **small_spec["model"]["params"])
    after = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.equal(after["0.weight"], before.state_dict()["0.weight"])
    assert not torch.equal(after["2.weight"], before.state_dict()["2.weight"])


def test_feature_extract_trains_only_the_head():
    model = torchtk.registry.create("model", "mlp", in_features=2, hidden=[4, 4], out_features=1)
    torchtk.registry.create("freeze", "feature_extract")(model)  # the contract's example
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["4.weight", "4.bias"]
    named = torch.nn.Sequential()
    named.add_module("backbone", torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4)))
    named.add_module("fc", torch.nn.Linear(4, 3))
    named.add_module("act", torch.nn.Softmax(dim=1))  # no parameters: not the head
    torchtk.registry.create("freeze", "feature_extract")(named)
    assert [n for n, p in named.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    assert not named.backbone[1].training  # frozen BatchNorm statistics
    torchtk.registry.create("freeze", "feature_extract", train=["backbone.1.", "fc."])(named)
    assert [n for n, p in named.named_parameters() if p.requires_grad] == [
        "backbone.1.weight", "backbone.1.bias", "fc.weight", "fc.bias"]
    with pytest.raises(ValueError, match="top-level modules: \\['backbone', 'fc'\\]"):
        torchtk.registry.create("freeze", "feature_extract", train=["head."])(named)
