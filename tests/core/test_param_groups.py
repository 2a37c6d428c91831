"""Parameter groups from the rules of several freeze policies, merged once after all freezing."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from pydantic import Field

import torchtk
from torchtk import Component, Params, hookimpl
from torchtk.core.errors import UserInputError
from torchtk.core.param_groups import group_names, held_name, merge_groups
from torchtk.core.plan import compute_plan
from torchtk.core.stepper import current_lrs
from torchtk.testing import registry_with


def net():
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_two_policies_compose_per_parameter():
    model = net()
    head = {"name": "head", "params": list(model[2].parameters()), "lr": 1e-3}
    no_decay = {"name": "no_decay", "params": [model[0].bias, model[2].bias], "weight_decay": 0.0}
    groups = merge_groups(model, [("freeze[0]", head), ("freeze[1]", no_decay)])
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["default", "no_decay", "head", "head+no_decay"]
    assert by_name["default"]["params"] == [model[0].weight] and "lr" not in by_name["default"]
    assert by_name["no_decay"]["params"] == [model[0].bias] and by_name["no_decay"]["weight_decay"] == 0.0
    assert by_name["head"]["params"] == [model[2].weight] and by_name["head"]["lr"] == 1e-3
    assert by_name["head+no_decay"]["params"] == [model[2].bias]
    assert by_name["head+no_decay"]["lr"] == 1e-3 and by_name["head+no_decay"]["weight_decay"] == 0.0


def test_a_later_rule_overrides_an_earlier_option():
    model = net()
    rules = [("freeze[0]", {"name": "all", "params": list(model.parameters()), "lr": 0.1}),
             ("freeze[1]", {"name": "all", "params": list(model[2].parameters()), "lr": 0.5})]
    groups = merge_groups(model, rules)
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("all", 0.1, 2), ("all_2", 0.5, 2)]


def test_frozen_parameters_are_in_no_group_whatever_rule_listed_them():
    model = net()
    rules = [("freeze[0]", {"name": "body", "params": list(model[0].parameters()), "lr": 0.1})]
    model[0].weight.requires_grad_(False)  # frozen by a later policy
    groups = merge_groups(model, rules)
    assert all(all(p is not model[0].weight for p in g["params"]) for g in groups)
    assert sum(len(g["params"]) for g in groups) == 3


def test_without_rules_the_optimizer_gets_the_trainable_parameters():
    model = net()
    model[0].weight.requires_grad_(False)
    assert merge_groups(model, []) == [{"name": "default", "params": [model[0].bias, *model[2].parameters()]}]
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(UserInputError, match="no trainable parameter"):
        merge_groups(model, [])


class RuleParams(Params):
    """A group rule over the parameters whose names start with ``prefix``."""

    name: str = Field(description="Group name.")
    prefix: str = Field("", description="Parameter-name prefix ('' is every parameter).")
    suffix: str = Field("", description="Parameter-name suffix, e.g. 'bias'.")
    lr: float | None = Field(None, description="Group lr.")
    weight_decay: float | None = Field(None, description="Group weight decay.")


def rule_plugin():
    module = types.ModuleType("rule_plugin")

    @hookimpl
    def register_components(register):
        register(Component("freeze", "rule", "One group rule by name prefix and suffix.", params=RuleParams))
        register(Component("freeze", "bad_rule", "Returns a rule that is not a dict.", params=RuleParams))

    @hookimpl
    def freeze_policy(name, params):
        def policy(model):
            if name == "bad_rule":
                return [list(model.parameters())]
            chosen = [p for n, p in model.named_parameters() if n.startswith(params.prefix) and n.endswith(params.suffix)]
            options = {k: v for k, v in (("lr", params.lr), ("weight_decay", params.weight_decay)) if v is not None}
            return [{"name": params.name, "params": chosen, **options}]
        return policy

    module.register_components, module.freeze_policy = register_components, freeze_policy
    return module


def two_rule_spec(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = [{"name": "rule", "params": {"name": "head", "prefix": "2.", "lr": 0.001}},
                      {"name": "rule", "params": {"name": "no_decay", "suffix": "bias", "weight_decay": 0.0}},
                      {"name": "freeze", "params": {"modules": ["0.weight"]}}]
    spec["optimizer"] = {"name": "adamw", "params": {"lr": 0.01, "weight_decay": 0.05}}
    spec["trainer"]["epochs"] = 1
    return spec


def test_named_groups_are_logged_in_history_and_shown_by_plan(small_spec):
    registry = registry_with(rule_plugin())
    spec = two_rule_spec(small_spec)
    plan = compute_plan(spec, registry=registry)
    assert plan.groups == ["no_decay", "head", "head+no_decay"]  # 0.weight is frozen: no default group
    assert plan.updates[0].lr == [0.01, 0.001, 0.001] and plan.updates[0].weight_decay == [0.0, 0.05, 0.0]
    row = torchtk.train(spec, registry=registry).history[0]
    assert {k: v for k, v in row.items() if k.startswith("lr")} == {
        "lr/no_decay": 0.01, "lr/head": 0.001, "lr/head+no_decay": 0.001}


def test_a_rule_that_is_not_a_dict_is_an_input_error_naming_the_policy(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = ["freeze", {"name": "bad_rule", "params": {"name": "x"}}]
    with pytest.raises(UserInputError, match=r"freeze\[1\]: group rule 0 must be a dict"):
        torchtk.train(spec, registry=registry_with(rule_plugin()))


# -- groups without a name are named by what they hold ------------------------------------------------------


@pytest.mark.parametrize("names, expected", [
    (["layer4.0.conv1.weight", "layer4.1.bn.bias"], "layer4"),
    (["backbone.layer1.0.weight", "backbone.layer1.1.weight"], "backbone.layer1"),
    (["fc.weight", "fc.bias"], "fc"),
    (["conv1.weight", "conv2.weight", "conv2.bias"], "conv1+conv2"),
    (["a.w", "b.w", "c.w", "d.w"], "a..d"),
    (["weight", "bias"], "weight+bias"),  # a model that is one layer: its tensors' own names
    ([], "default"), ([""], "default"),
])
def test_held_name_says_what_a_group_holds(names, expected):
    assert held_name(names) == expected


def test_a_rule_without_a_name_is_named_by_its_parameters():
    model = net()
    groups = merge_groups(model, [("freeze[0]", {"params": list(model[2].parameters()), "lr": 1e-3})])
    assert [g["name"] for g in groups] == ["default", "2"]


def test_a_group_added_without_a_name_is_named_by_what_it_holds():
    model = net()
    optimizer = torch.optim.SGD([{"params": list(model[0].parameters()), "name": "default"}], lr=0.1)
    optimizer.add_param_group({"params": list(model[2].parameters())})
    assert group_names(optimizer, model) == ["default", "2"]
    assert group_names(optimizer) == ["default", "group1"]  # without the model: nothing to go by
    optimizer.add_param_group({"params": [model[2].bias.detach().clone().requires_grad_()]})
    assert group_names(optimizer, model) == ["default", "2", "default_2"]  # holds no tensor of the model
    assert current_lrs(optimizer, model=model) == {"lr/default": 0.1, "lr/2": 0.1, "lr/default_2": 0.1}


def test_unnamed_rules_get_their_names_in_history_and_plan(small_spec):
    registry = registry_with(rule_plugin())
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = [{"name": "rule", "params": {"name": "", "prefix": "2.", "lr": 0.001}}]
    spec["trainer"]["epochs"] = 1
    assert compute_plan(spec, registry=registry).groups == ["default", "2"]
    row = torchtk.train(spec, registry=registry).history[0]
    assert {k for k in row if k.startswith("lr")} == {"lr/default", "lr/2"}
