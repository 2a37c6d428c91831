"""step_log: rows every log_every_n_steps updates with the logged loss, the lr the update
used and grad_clip's norm; a resumed run's steps.csv equals an uninterrupted one's."""

from __future__ import annotations

import csv

import pytest

import torchtk
from torchtk.core.engine import RunInterrupted
from torchtk.testing import registry_with
from tests.core.test_scheduler_stepping import SteppingPlugin


def rows(run_dir):
    with open(run_dir / "steps.csv") as handle:
        return list(csv.DictReader(handle))


def test_step_log_rows(small_spec):
    small_spec["scheduler"] = {"name": "exponential", "params": {"gamma": 0.9}, "interval": "step"}
    small_spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 20}}, "step_log"]
    small_spec["trainer"]["log_every_n_steps"] = 4
    result = torchtk.train(small_spec)
    logged = rows(result.run_dir)
    assert [int(r["step"]) for r in logged] == list(range(4, 37, 4))  # 12 batches per epoch, 3 epochs
    assert [int(r["batch"]) for r in logged[:3]] == [4, 8, 12]
    for r in logged:  # the lr the update used: before its scheduler step
        assert float(r["lr"]) == pytest.approx(0.01 * 0.9 ** (int(r["step"]) - 1))
        assert float(r["grad_norm"]) > 0 and float(r["loss"]) > 0 and r["skipped"] == "0"


def test_step_log_after_resume_equals_a_straight_run(small_spec):
    registry = registry_with(SteppingPlugin())
    small_spec["callbacks"] = ["step_log"]
    small_spec["trainer"].update(log_every_n_steps=5, epochs=4)
    straight = torchtk.train(small_spec, registry=registry)
    small_spec["callbacks"].append({"name": "stop_after", "params": {"epoch": 2}})
    with pytest.raises(RunInterrupted):
        torchtk.train(small_spec, registry=registry)
    run_dir = max((p for p in straight.run_dir.parent.iterdir() if p != straight.run_dir), key=lambda p: p.name)
    resumed = torchtk.train(small_spec, registry=registry, resume=run_dir)
    assert rows(resumed.run_dir) == rows(straight.run_dir)
    assert rows(straight.run_dir)[0]["grad_norm"] == ""  # no grad_clip: no norm computed
