"""One build path: tk train and tk plan build through assembly.build_parts, in its documented order."""

from __future__ import annotations

import copy

import pytest
import torch

import torchtk
from torchtk.core import assembly
from torchtk.core.plan import compute_plan


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import torch\n\ndef tiny(width=8):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_plan_works_on_a_model_given_by_import_path(small_spec, factory_module, tk, spec_file):
    spec = copy.deepcopy(small_spec)
    spec["model"] = {"import": "my_models:tiny", "params": {"width": 4}}
    plan = compute_plan(spec)
    assert len(plan.updates) == 3 * 12 and plan.groups == ["default"]
    result = tk("plan", spec_file(spec), "-o", spec_file(spec).parent / "lr.png")
    assert result.exit_code == 0, result.stderr
    assert torchtk.train(spec).history[-1]["lr"] == plan.updates[-1].lr[0]


def test_train_and_plan_run_the_same_steps_in_the_same_order(small_spec, monkeypatch):
    calls = []
    for name, step in list(assembly.STEPS.items()):
        def recording(parts, resolved, placement, _name=name, _step=step):
            calls.append(_name)
            _step(parts, resolved, placement)
        monkeypatch.setitem(assembly.STEPS, name, recording)
    small_spec["trainer"]["epochs"] = 1
    torchtk.train(small_spec)
    trained = list(calls)
    calls.clear()
    compute_plan(small_spec)
    assert trained == list(assembly.STEPS)
    assert calls == trained[: trained.index("schedulers") + 1]


def test_the_documented_order_is_the_order_of_the_steps():
    doc = assembly.__doc__
    positions = [doc.index(f"\n    {name} ") for name in assembly.STEPS]
    assert positions == sorted(positions)


def test_build_parts_stops_after_the_step_asked_for(small_spec):
    from torchtk.core.distributed import SingleProcess
    from torchtk.core.spec import load_resolved

    parts = assembly.build_parts(load_resolved(small_spec), SingleProcess(torch.device("cpu")), upto="optimizer")
    assert parts.optimizer is not None and parts.loss is None and parts.schedulers == []
    with pytest.raises(ValueError, match="steps: seed, data"):
        assembly.build_parts(load_resolved(small_spec), SingleProcess(torch.device("cpu")), upto="weights")
