"""Schedulers: parity with torch's own classes, expressions, step_decay, warmup, validation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.optim import lr_scheduler as L

import torchtk
from torchtk.core.errors import SpecError
from torchtk.plugins.schedulers import ExpressionError, compile_expression
from torchtk.testing import check_plugin

STEPS = 60
METRICS = [1.0 / (1 + (i % 7)) + 0.01 * (i // 7) for i in range(STEPS)]  # plateaus and rises: plateau reduces


def optimizer():
    """Two param groups with their own lr and momentum, as a fine-tuning policy gives."""
    torch.manual_seed(0)
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.randn(3))], "lr": 0.1},
                            {"params": [torch.nn.Parameter(torch.randn(2))], "lr": 0.01}], momentum=0.9)


def flat(rows):
    return [lr for row in rows for lr in row]


def lr_sequence(make, needs_metric=False, steps=STEPS):
    opt = optimizer()
    scheduler = make(opt)
    seen = [[g["lr"] for g in opt.param_groups]]
    for i in range(steps):
        opt.step()
        scheduler.step(METRICS[i]) if needs_metric else scheduler.step()
        seen.append([g["lr"] for g in opt.param_groups])
    return seen


def ours(name, **params):
    return lambda opt: torchtk.registry.create("scheduler", name, optimizer=opt, **params)


PARITY = {
    "lambda": ({"lr_lambda": "0.95 ** epoch"}, lambda o: L.LambdaLR(o, lambda e: 0.95 ** e)),
    "multiplicative": ({"lr_lambda": "0.97"}, lambda o: L.MultiplicativeLR(o, lambda e: 0.97)),
    "step": ({"step_size": 7, "gamma": 0.5}, lambda o: L.StepLR(o, step_size=7, gamma=0.5)),
    "multi_step": ({"milestones": [10, 25, 40], "gamma": 0.3}, lambda o: L.MultiStepLR(o, [10, 25, 40], gamma=0.3)),
    "constant": ({"factor": 0.5, "total_iters": 8}, lambda o: L.ConstantLR(o, factor=0.5, total_iters=8)),
    "linear": ({"start_factor": 0.2, "end_factor": 0.9, "total_iters": 20},
               lambda o: L.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=20)),
    "exponential": ({"gamma": 0.93}, lambda o: L.ExponentialLR(o, gamma=0.93)),
    "polynomial": ({"total_iters": 40, "power": 2.0}, lambda o: L.PolynomialLR(o, total_iters=40, power=2.0)),
    "cosine_annealing": ({"T_max": 20, "eta_min": 0.001}, lambda o: L.CosineAnnealingLR(o, T_max=20, eta_min=0.001)),
    "reduce_on_plateau": ({"factor": 0.5, "patience": 2, "cooldown": 1},
                          lambda o: L.ReduceLROnPlateau(o, factor=0.5, patience=2, cooldown=1)),
    "cyclic": ({"base_lr": 0.01, "max_lr": [0.1, 0.05], "step_size_up": 5, "mode": "triangular2"},
               lambda o: L.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.05], step_size_up=5, mode="triangular2")),
    "one_cycle": ({"max_lr": 0.1, "total_steps": STEPS}, lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=STEPS)),
    "cosine_annealing_warm_restarts": ({"T_0": 7, "T_mult": 2, "eta_min": 1e-4},
                                       lambda o: L.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2, eta_min=1e-4)),
    "sequential": ({"schedulers": [{"name": "constant", "params": {"factor": 0.1, "total_iters": 5}},
                                   {"name": "exponential", "params": {"gamma": 0.9}}], "milestones": [5]},
                   lambda o: L.SequentialLR(o, [L.ConstantLR(o, factor=0.1, total_iters=5), L.ExponentialLR(o, 0.9)],
                                            milestones=[5])),
    "chained": ({"schedulers": [{"name": "constant", "params": {"factor": 0.1, "total_iters": 5}},
                                {"name": "exponential", "params": {"gamma": 0.9}}]},
                lambda o: L.ChainedScheduler([L.ConstantLR(o, factor=0.1, total_iters=5), L.ExponentialLR(o, 0.9)], o)),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(PARITY))
def test_same_lr_sequence_as_torch(name):
    params, reference = PARITY[name]
    needs_metric = name == "reduce_on_plateau"
    expected = lr_sequence(reference, needs_metric)
    got = lr_sequence(ours(name, **params), needs_metric)
    assert got == expected
    assert len({lr for row in expected for lr in row}) > 2  # the schedule really moves


def test_every_torch_scheduler_is_listed():
    names = torchtk.registry.names("scheduler")
    assert set(PARITY) <= set(names)
    assert {"step_decay", "warmup"} <= set(names)
    assert check_plugin(torchtk.registry, "torchtk.plugins.schedulers") == []


def test_declared_intervals_and_metric():
    extras = {c.name: c.extras for c in torchtk.registry.components("scheduler")}
    assert extras["one_cycle"]["interval"] == extras["cyclic"]["interval"] == "step"
    assert extras["cosine_annealing"]["interval"] == "epoch"
    assert extras["reduce_on_plateau"]["needs_metric"] is True
    assert [n for n, e in extras.items() if e["needs_metric"]] == ["reduce_on_plateau"]


def test_params_follow_the_torch_constructor():
    info = torchtk.registry.describe("scheduler", "step")
    step_size = next(p for p in info["params"] if p["name"] == "step_size")
    assert step_size["required"] and step_size["bounds"] == {"minimum": 1}
    assert "decay" in step_size["description"].lower()
    gamma = next(p for p in info["params"] if p["name"] == "gamma")
    assert gamma["default"] == 0.1 and ">>>" not in gamma["description"]


# -- expressions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, epoch, value", [
    ("0.95 ** epoch", 3, 0.95 ** 3),
    ("min(1, (epoch + 1) / 5)", 2, 0.6),
    ("max(0.1, 1 - epoch / 100)", 95, 0.1),
    ("0.5 * (1 + cos(pi * epoch / 10))", 10, 0.0),
    ("-(-2) // 1 + epoch % 3", 4, 3.0),
    ("exp(-0.1 * epoch) * sqrt(4)", 0, 2.0),
])
def test_expressions_evaluate(text, epoch, value):
    assert compile_expression(text)(epoch) == pytest.approx(value, abs=1e-15)


@pytest.mark.parametrize("text, fragment", [
    ("__import__('os').system('echo hi')", "not allowed"),
    ("epoch.real", "not allowed"),
    ("lr * 2", "unknown name 'lr'"),
    ("[1, 2][0]", "not allowed"),
    ("lambda e: e", "not allowed"),
    ("epoch > 3", "not allowed"),
    ("min(x=1)", "positional"),
    ("0.9 **", "not a valid expression"),
    ("x" * 400, "longer than"),
])
def test_expressions_reject_anything_else(text, fragment):
    with pytest.raises(ExpressionError, match=fragment):
        compile_expression(text)


def test_expression_failures_name_the_epoch():
    with pytest.raises(ExpressionError, match="at epoch 0"):
        compile_expression("1 / epoch")(0)
    overflowing = compile_expression("10.0 ** (10.0 ** epoch)")
    assert overflowing(2) == 1e100
    with pytest.raises(ExpressionError, match="at epoch 3"):
        overflowing(3)


def test_per_group_expressions_and_named_functions():
    got = lr_sequence(ours("lambda", lr_lambda=["0.9 ** epoch", "step_decay"]), steps=65)
    want = lr_sequence(lambda o: L.LambdaLR(o, [lambda e: 0.9 ** e, lambda e: 0.1 ** (e // 30)]), steps=65)
    assert flat(got) == pytest.approx(flat(want), rel=1e-12)


# -- step_decay ----------------------------------------------------------------------------------


def test_step_decay_at_the_boundaries():
    opt = optimizer()
    scheduler = torchtk.registry.create("scheduler", "step_decay", optimizer=opt)  # factor 0.1, every 30
    seen = {0: opt.param_groups[0]["lr"]}
    for epoch in range(1, 100):
        opt.step()
        scheduler.step()
        seen[epoch] = opt.param_groups[0]["lr"]
    expected = {0: 0.1, 29: 0.1, 30: 0.01, 59: 0.01, 60: 0.001, 99: 0.0001}
    assert {e: seen[e] for e in expected} == pytest.approx(expected, rel=1e-12)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * 0.001, rel=1e-12)  # each group from its own lr


def test_step_decay_params():
    opt = optimizer()
    scheduler = torchtk.registry.create("scheduler", "step_decay", optimizer=opt, factor=0.5, every=2)
    for _ in range(5):
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)


# -- warmup ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_linear_warmup_then_cosine_matches_torch_sequential():
    then = {"name": "cosine_annealing", "params": {"T_max": 40, "eta_min": 0.001}}
    got = lr_sequence(ours("warmup", length=5, start_factor=0.2, then=then))
    want = lr_sequence(lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.2, total_iters=5),
                                                    L.CosineAnnealingLR(o, T_max=40, eta_min=0.001)], milestones=[5]))
    assert flat(got) == pytest.approx(flat(want), rel=1e-12)
    assert got[0] == pytest.approx([0.02, 0.002]) and got[5] == pytest.approx([0.1, 0.01])


def test_constant_warmup_then_nothing():
    got = lr_sequence(ours("warmup", length=3, mode="constant", start_factor=0.5), steps=6)
    assert [row[0] for row in got] == pytest.approx([0.05, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1])


def test_warmup_then_reduce_on_plateau_gets_the_metric():
    opt = optimizer()
    scheduler = torchtk.registry.create("scheduler", "warmup", optimizer=opt, length=2,
                                        then={"name": "reduce_on_plateau", "params": {"patience": 0, "factor": 0.5}})
    assert scheduler.needs_metric
    lrs = []
    for metric in [5.0, 5.0, 1.0, 2.0, 2.0, 0.5]:  # the first two are ignored: still warming up
        scheduler.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.055, 0.1, 0.1, 0.05, 0.025, 0.025])


def test_warmup_state_round_trips():
    then = {"name": "exponential", "params": {"gamma": 0.5}}
    opt = optimizer()
    first = torchtk.registry.create("scheduler", "warmup", optimizer=opt, length=3, then=then)
    for _ in range(5):
        opt.step()
        first.step()
    state = copy.deepcopy(first.state_dict())
    opt2 = optimizer()
    opt2.load_state_dict(opt.state_dict())
    second = torchtk.registry.create("scheduler", "warmup", optimizer=opt2, length=3, then=then)
    second.load_state_dict(state)
    opt2.load_state_dict(opt.state_dict())
    for _ in range(3):
        opt.step(), opt2.step()
        first.step()
        second.step()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups] == pytest.approx([0.1 * 0.5 ** 5, 0.01 * 0.5 ** 5])


# -- one_cycle sizing ----------------------------------------------------------------------------


def test_one_cycle_outside_a_run_needs_its_length():
    with pytest.raises(torchtk.TorchtkError, match="total_steps, or epochs and steps_per_epoch"):
        torchtk.registry.create("scheduler", "one_cycle", optimizer=optimizer(), max_lr=0.1)
    scheduler = torchtk.registry.create("scheduler", "one_cycle", optimizer=optimizer(), max_lr=0.1,
                                        epochs=2, steps_per_epoch=3)
    assert scheduler.total_steps == 6


def test_one_cycle_fills_its_length_from_the_run():
    run = torchtk.RunInfo(epochs=4, steps_per_epoch=5, batches_per_epoch=10, accumulate=2)
    scheduler = torchtk.registry.create("scheduler", "one_cycle", optimizer=optimizer(), max_lr=0.1, run=run)
    assert scheduler.total_steps == 20


# -- validation in a spec --------------------------------------------------------------------------


def spec_with(small_spec, scheduler):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = scheduler
    return spec


def problems(spec):
    with pytest.raises(SpecError) as raised:
        torchtk.load_spec(spec)
    return dict(raised.value.problems)


@pytest.mark.parametrize("expression, fragment", [
    ("__import__('os')", "not allowed"),
    ("0.9 ** step", "unknown name 'step'"),
    ("1 / epoch", "at epoch 0"),
    ("nonesuch", "neither an expression nor a function-style scheduler"),
])
def test_invalid_expression_is_a_validation_error_at_its_path(small_spec, expression, fragment):
    found = problems(spec_with(small_spec, {"name": "lambda", "params": {"lr_lambda": expression}}))
    assert list(found) == ["scheduler[0].params.lr_lambda"]
    assert fragment in found["scheduler[0].params.lr_lambda"]


def test_missing_required_params_have_their_paths(small_spec):
    found = problems(spec_with(small_spec, [{"name": "cosine_annealing"}, {"name": "lambda", "params": {}}]))
    assert found == {"scheduler[0].params.T_max": "required, but missing",
                     "scheduler[1].params.lr_lambda": "required, but missing"}


def test_nested_scheduler_problems_have_their_paths(small_spec):
    found = problems(spec_with(small_spec, {"name": "warmup", "params": {
        "length": 2, "then": {"name": "cosine_annealing", "params": {"eta_min": -1}}}}))
    assert set(found) == {"scheduler[0].params.then.params.T_max", "scheduler[0].params.then.params.eta_min"}
    found = problems(spec_with(small_spec, {"name": "sequential", "params": {
        "schedulers": ["exponential", {"name": "cosine_anealing", "params": {"T_max": 3}}], "milestones": [2]}}))
    assert set(found) == {"scheduler[0].params.schedulers[0].params.gamma", "scheduler[0].params.schedulers[1].name"}
    assert "did you mean 'cosine_annealing'" in found["scheduler[0].params.schedulers[1].name"].lower()


def test_composites_refuse_what_torch_cannot_do(small_spec):
    found = problems(spec_with(small_spec, {"name": "sequential", "params": {
        "schedulers": [{"name": "step", "params": {"step_size": 2}}, "reduce_on_plateau"], "milestones": [2]}}))
    assert "warmup" in found["scheduler[0].params.schedulers[1].name"]
    found = problems(spec_with(small_spec, {"name": "sequential", "params": {
        "schedulers": [{"name": "step", "params": {"step_size": 2}}], "milestones": [2]}}))
    assert "milestones needs 0 value(s)" in found["scheduler[0].params"]


def test_resolved_spec_is_explicit(small_spec):
    spec = torchtk.load_spec(spec_with(small_spec, {"name": "warmup", "params": {
        "length": 2, "then": {"name": "cosine_annealing", "params": {"T_max": 3}}}}))
    params = spec.scheduler[0].params
    assert params["then"]["params"] == {"T_max": 3, "eta_min": 0.0, "last_epoch": -1}
    assert params["mode"] == "linear" and math.isclose(params["start_factor"], 0.1)


# -- names inside params resolve in the registry that validates them ------------------------------


def plugin_providing_scheduler(name, params=None, extras=None):
    """A test plugin with one scheduler ``name``; what it builds is marked ``built_by_plugin``."""
    from torchtk import Component, NoParams, hookimpl

    class Plugin:
        __name__ = f"test_{name}"

        @hookimpl
        def register_components(self, register):
            register(Component("scheduler", name, "Test scheduler.", params=params or NoParams, extras=extras or {}))

        @hookimpl
        def make_scheduler(self, name, params, optimizer, run):
            scheduler = L.LambdaLR(optimizer, lambda epoch: 0.5)
            scheduler.built_by_plugin = True
            return scheduler

    return Plugin()


def test_a_plugin_scheduler_inside_warmup_resolves_in_the_registry_passed_in(small_spec):
    from torchtk.core.spec import load_resolved, load_spec
    from torchtk.testing import registry_with

    registry = registry_with(plugin_providing_scheduler("my_scheduler"))
    spec = spec_with(small_spec, {"name": "warmup", "params": {"length": 2, "then": "my_scheduler"}})
    assert load_spec(spec, registry=registry).scheduler[0].params["then"] == {"name": "my_scheduler", "params": {}}
    entry = load_resolved(spec, registry=registry).entry("scheduler[0]")
    then = entry.params.then
    assert then.component.plugin == "test_my_scheduler"
    warmup = registry.build(entry.component, entry.params, optimizer=optimizer(), run=None)
    assert warmup.after.built_by_plugin  # built by the plugin, through the registry that resolved it
    with pytest.raises(SpecError) as raised:
        load_spec(spec)  # the process-wide registry has no such scheduler
    message = dict(raised.value.problems)["scheduler[0].params.then.name"]
    assert "unknown scheduler 'my_scheduler'" in message and "tk list schedulers" in message


def test_plugin_schedulers_inside_sequential_and_chained_resolve_in_the_registry_passed_in(small_spec):
    from torchtk.core.spec import load_resolved
    from torchtk.testing import registry_with

    registry = registry_with(plugin_providing_scheduler("my_scheduler"))
    for params in ({"schedulers": ["my_scheduler", "my_scheduler"], "milestones": [3]},
                   {"schedulers": ["my_scheduler", {"name": "exponential", "params": {"gamma": 0.9}}]}):
        name = "sequential" if "milestones" in params else "chained"
        entry = load_resolved(spec_with(small_spec, {"name": name, "params": params}), registry=registry).entry(
            "scheduler[0]")
        built = registry.build(entry.component, entry.params, optimizer=optimizer(), run=None)
        assert built._schedulers[0].built_by_plugin
        with pytest.raises(SpecError, match=r"scheduler\[0\].params.schedulers\[0\].name: unknown scheduler"):
            torchtk.load_spec(spec_with(small_spec, {"name": name, "params": params}))


def test_a_plugin_function_style_scheduler_works_as_lr_lambda_in_the_registry_passed_in(small_spec):
    from torchtk.core.spec import load_resolved
    from torchtk.plugins.schedulers import StepDecayParams
    from torchtk.testing import registry_with

    registry = registry_with(plugin_providing_scheduler(
        "my_decay", params=StepDecayParams, extras={"lr_lambda": "torchtk.plugins.schedulers:step_decay"}))
    spec = spec_with(small_spec, {"name": "lambda", "params": {"lr_lambda": "my_decay"}})
    entry = load_resolved(spec, registry=registry).entry("scheduler[0]")
    scheduler = registry.build(entry.component, entry.params, optimizer=optimizer(), run=None)
    assert scheduler.lr_lambdas[0](30) == pytest.approx(0.1)  # step_decay's defaults: tenfold down at 30
    found = problems(spec)
    assert "neither an expression nor a function-style scheduler" in found["scheduler[0].params.lr_lambda"]


def test_params_validated_without_a_context_use_the_process_wide_registry():
    from torchtk.plugins.schedulers import WarmupParams

    params = WarmupParams.model_validate({"length": 2, "then": {"name": "exponential", "params": {"gamma": 0.9}}})
    assert params.then.component.name == "exponential" and params.then.params == {"gamma": 0.9, "last_epoch": -1}
    assert params == WarmupParams.model_validate(params.model_dump())  # what it remembers is not its value
    assert copy.deepcopy(params).then.component is params.then.component
    with pytest.raises(ValueError, match="unknown scheduler 'my_scheduler'"):
        WarmupParams.model_validate({"length": 2, "then": "my_scheduler"})


def test_a_run_trains_with_a_plugin_scheduler_inside_warmup_from_the_registry_passed_in(small_spec):
    from torchtk.testing import registry_with

    registry = registry_with(plugin_providing_scheduler("my_scheduler"))
    spec = spec_with(small_spec, {"name": "warmup", "params": {"length": 2, "then": "my_scheduler"}})
    result = torchtk.train(spec, registry=registry)
    assert result.history[-1]["lr"] == pytest.approx(0.01 * 0.5)  # after the warmup, the plugin's factor 0.5


# -- last_epoch, CyclicLR scale_fn ----------------------------------------------------------------

START = 12
MID_SCHEDULE = {name: params for name, (params, _) in PARITY.items()
                if name not in ("reduce_on_plateau", "sequential", "chained")}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(MID_SCHEDULE))
def test_last_epoch_starts_mid_schedule(name):
    """last_epoch k: the sequence a fresh scheduler gives from step k + 1 on."""
    params = MID_SCHEDULE[name]
    full = lr_sequence(ours(name, **params), steps=STEPS)
    started = lr_sequence(ours(name, last_epoch=START, **params), steps=STEPS - START - 1)
    assert len(started) == STEPS - START
    for got, expected in zip(started, full[START + 1:]):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    opt = optimizer()
    scheduler = torchtk.registry.create("scheduler", name, optimizer=opt, last_epoch=START, **params)
    assert scheduler.last_epoch == START + 1  # torch's counter after a start at last_epoch
    described = {p["name"]: p for p in torchtk.registry.describe("scheduler", name)["params"]}
    assert described["last_epoch"]["default"] == -1 and "mid-schedule" in described["last_epoch"]["description"]


def test_last_epoch_is_validated_and_past_the_end_is_an_error():
    from torchtk.core.errors import ParamsError

    with pytest.raises(ParamsError, match="last_epoch: Input should be greater than or equal to -1"):
        torchtk.registry.create("scheduler", "step", optimizer=optimizer(), step_size=2, last_epoch=-2)
    with pytest.raises(torchtk.TorchtkError, match="'one_cycle': last_epoch 60 cannot be reached"):
        torchtk.registry.create("scheduler", "one_cycle", optimizer=optimizer(), max_lr=0.1, total_steps=STEPS,
                                last_epoch=STEPS)
    assert "last_epoch" not in {p["name"] for p in torchtk.registry.describe("scheduler", "reduce_on_plateau")["params"]}


@pytest.mark.parametrize("mode,text", [("cycle", "0.5 ** (x - 1)"), ("iterations", "1 / (1 + 0.01 * x)")])
def test_cyclic_scale_fn_expression_equals_torch_with_the_python_function(mode, text):
    functions = {"0.5 ** (x - 1)": lambda x: 0.5 ** (x - 1), "1 / (1 + 0.01 * x)": lambda x: 1 / (1 + 0.01 * x)}
    params = {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "scale_mode": mode}
    expected = lr_sequence(lambda o: L.CyclicLR(o, scale_fn=functions[text], **params))
    got = lr_sequence(ours("cyclic", scale_fn=text, **params))
    assert flat(got) == pytest.approx(flat(expected))
    assert got != lr_sequence(ours("cyclic", **params))  # the scale really changes the cycle


def test_cyclic_scale_fn_state_round_trips():
    opt = optimizer()
    scheduler = torchtk.registry.create("scheduler", "cyclic", optimizer=opt, base_lr=0.01, max_lr=0.1,
                                        step_size_up=3, scale_fn="0.5 ** (x - 1)", last_epoch=4)
    state = copy.deepcopy(scheduler.state_dict())
    again = torchtk.registry.create("scheduler", "cyclic", optimizer=optimizer(), base_lr=0.01, max_lr=0.1,
                                    step_size_up=3, scale_fn="0.5 ** (x - 1)")
    again.load_state_dict(state)
    for _ in range(10):
        scheduler.step()
        again.step()
        assert again.get_last_lr() == scheduler.get_last_lr()


@pytest.mark.parametrize("params, fragment", [
    ({"scale_fn": "0.5 ** epoch"}, "unknown name 'epoch'"),
    ({"scale_fn": "__import__('os')"}, "not allowed"),
    ({"scale_fn": "1 / (x - 1)"}, "scale_fn expression '1 / (x - 1)' fails at x 1"),
    ({"scale_fn": "x", "mode": "exp_range"}, "give scale_fn or mode, not both"),
])
def test_cyclic_scale_fn_problems_have_their_path(small_spec, params, fragment):
    found = problems(spec_with(small_spec, {"name": "cyclic", "interval": "step",
                                            "params": {"base_lr": 0.01, "max_lr": 0.1, **params}}))
    assert len(found) == 1
    assert fragment in next(iter(found.values()))
