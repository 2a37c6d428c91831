"""timm's optimizers and schedules as torchtk components, compared with timm used directly."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from torchtk.core.errors import ParamsError
from torchtk.core.registry import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry()


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    return model, x, y


def _train(optimizer, model, x, y, steps=5):
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["lamb", "lion", "adan", "clion", "madgrad"])
def test_the_optimizer_steps_as_timms_own(registry, name):
    import timm.optim

    model, x, y = _problem()
    ours = registry.create("optimizer", name, parameters=[{"params": list(model.parameters())}], lr=0.01)
    got = _train(ours, model, x, y)
    reference_model, x, y = _problem()
    # the class's own defaults (create_optimizer_v2 alone would default weight_decay to 0)
    weight_decay = ours.defaults["weight_decay"]
    reference = timm.optim.create_optimizer_v2(reference_model.parameters(), opt=name, lr=0.01,
                                               weight_decay=weight_decay)
    want = _train(reference, reference_model, x, y)
    assert type(ours) is type(reference)
    assert all(torch.allclose(a, b) for a, b in zip(got, want))


def test_params_come_from_the_constructor_and_are_strict(registry):
    from torchtk_timm.optimizers import params_model

    adan = params_model("adan")
    assert adan().betas == [0.98, 0.92, 0.99] and "foreach" not in adan.model_fields
    assert "caution" not in params_model("clion").model_fields  # fixed by the name
    model, _, _ = _problem()
    with pytest.raises(ParamsError, match="betaz"):
        registry.create("optimizer", "lamb", parameters=model.parameters(), betaz=[0.9, 0.9])
    with pytest.raises(ValidationError):
        params_model("lamb").model_validate({"lr": "0.1"})  # never coerced


def test_param_groups_keep_their_own_options(registry):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    groups = [{"params": list(model[0].parameters()), "lr": 0.1, "weight_decay": 0.0, "name": "a"},
              {"params": list(model[1].parameters()), "name": "b"}]
    optimizer = registry.create("optimizer", "lamb", parameters=groups, lr=0.01, weight_decay=0.05)
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.1, 0.0), (0.01, 0.05)]


def _lrs(scheduler, optimizer, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name, params, timm_class", [
    ("cosine_cycles", {"t_initial": 4, "cycle_limit": 3, "cycle_decay": 0.5, "warmup_t": 2, "warmup_factor": 0.1,
                       "min_factor": 0.01}, "CosineLRScheduler"),
    ("tanh", {"t_initial": 5, "warmup_t": 1}, "TanhLRScheduler"),
    ("wsd", {"t_initial": 10, "decay_t": 4, "warmup_t": 2, "decay_fn": "cosine"}, "WSDLRScheduler"),
])
def test_the_schedule_is_timms(registry, name, params, timm_class):
    from timm import scheduler as timm_scheduler

    base = 0.2
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=base)
    ours = _lrs(registry.create("scheduler", name, optimizer=optimizer, **params), optimizer, 14)
    reference_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    kwargs = dict(params)
    kwargs["warmup_lr_init"] = kwargs.pop("warmup_factor", 0.0) * base
    kwargs["lr_min"] = kwargs.pop("min_factor", 0.0) * base
    reference = getattr(timm_scheduler, timm_class)(reference_optimizer, **kwargs)
    want = [reference._get_lr(t)[0] for t in range(14)]
    assert ours == pytest.approx(want)
    if name == "cosine_cycles":  # what torch's CosineAnnealingWarmRestarts cannot do: a lower peak per restart
        assert ours[0] == pytest.approx(0.1 * base) and ours[4] == pytest.approx(base / 2)  # warmup start; 2nd peak


def test_scheduler_checkpoint_state_loads_with_weights_only(registry, tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = registry.create("scheduler", "wsd", optimizer=optimizer, t_initial=6, decay_t=2)
    scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["last_epoch"] == 1
