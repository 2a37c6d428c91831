"""Regression tests for the bugs a new user found (issue 9, item 8)."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys

import pytest
import torch


# -- tk validate runs every check that needs no data -------------------------------------------


def _no_val(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["data"]["val_split"] = 0
    return spec


def test_validate_rejects_default_monitor_without_validation_like_train(tk, spec_file, small_spec):
    path = spec_file(_no_val(small_spec))
    validated = tk("validate", path)
    assert validated.exit_code == 2 and "Traceback" not in validated.stderr
    message = "trainer.monitor: 'val_loss' is not logged by this run; logged: train_loss"
    assert message in validated.stderr and "valid\n" not in validated.stderr
    trained = tk("train", path)
    assert trained.exit_code == 2 and message in trained.stderr  # the same words as tk train


def test_validate_checks_scheduler_and_callback_monitors(tk, spec_file, small_spec):
    spec = copy.deepcopy(small_spec)
    spec["trainer"]["monitor"] = "train_loss"
    spec["scheduler"] = {"name": "reduce_on_plateau", "monitor": "val_f1"}
    result = tk("validate", spec_file(spec))
    assert result.exit_code == 2
    assert ("scheduler[0].monitor: 'val_f1' is not logged by this run; logged: train_loss, val_loss, val_accuracy"
            in result.stderr)
    spec["scheduler"] = {"name": "warmup", "params": {"length": 2, "then": "reduce_on_plateau"}, "monitor": "val_f1"}
    assert "scheduler[0].monitor: 'val_f1' is not logged" in tk("validate", spec_file(spec)).stderr
    spec["scheduler"] = []
    spec["callbacks"] = [{"name": "early_stopping", "params": {"monitor": "val_acc"}}]
    result = tk("validate", spec_file(spec))
    assert result.exit_code == 2 and "callbacks[0].params.monitor: 'val_acc' is not logged" in result.stderr


def test_validate_accepts_what_train_accepts(tk, spec_file, small_spec):
    spec = _no_val(small_spec)
    spec["trainer"]["monitor"] = "train_loss"
    result = tk("validate", spec_file(spec))
    assert result.exit_code == 0 and result.stderr.endswith("valid\n")
    assert result.json()["data"]["val_split"] == 0
    assert tk("validate", spec_file(small_spec)).exit_code == 0
    small_spec["trainer"]["monitor"] = "val_accuracy"
    assert tk("validate", spec_file(small_spec)).exit_code == 0


def test_validate_metric_scheduler_per_update_is_refused_as_train_does(tk, spec_file, small_spec):
    small_spec["scheduler"] = {"name": "reduce_on_plateau", "interval": "step"}
    result = tk("validate", spec_file(small_spec))
    assert result.exit_code == 2 and "cannot step per update" in result.stderr


def test_check_without_data_builds_nothing_when_val_split_decides():
    from torchtk.core.assembly import check_without_data
    from torchtk.core.spec import load_resolved

    from tests.conftest import SMALL_RINGS

    spec = copy.deepcopy(SMALL_RINGS)
    spec["data"]["val_split"] = 0
    spec["data"]["name"] = "image_folder"  # would fail to build: no root
    spec["data"]["params"] = {"root": "/nonexistent-folder"}
    resolved = load_resolved(spec)
    check_without_data(resolved, build_dataset=False)  # undecidable without the data: not refused


# -- multi_step milestones must increase ---------------------------------------------------------


@pytest.mark.parametrize("milestones", [[5, 3], [4, 4], [2, 6, 6]])
def test_multi_step_refuses_non_increasing_milestones(tk, spec_file, small_spec, milestones):
    small_spec["scheduler"] = {"name": "multi_step", "params": {"milestones": milestones}}
    result = tk("validate", spec_file(small_spec))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "scheduler[0].params.milestones: milestones must be strictly increasing" in result.stderr


def test_multi_step_accepts_increasing_milestones(tk, spec_file, small_spec):
    small_spec["scheduler"] = {"name": "multi_step", "params": {"milestones": [1, 2], "gamma": 0.5}}
    result = tk("validate", spec_file(small_spec))
    assert result.exit_code == 0
    assert result.json()["scheduler"][0]["params"] == {"milestones": [1, 2], "gamma": 0.5, "last_epoch": -1}


# -- multiplicative compounds ---------------------------------------------------------------------


def test_multiplicative_lr_lambda_description_says_it_compounds(tk):
    info = tk("show", "scheduler", "multiplicative", "--json").json()
    param = next(p for p in info["params"] if p["name"] == "lr_lambda")
    assert "initial lr" not in param["description"] and "compound" in param["description"]
    lam = next(p for p in tk("show", "scheduler", "lambda", "--json").json()["params"] if p["name"] == "lr_lambda")
    assert "initial lr" in lam["description"]  # LambdaLR really is relative to the initial lr


def test_multiplicative_really_compounds():
    from torchtk.core.registry import get_registry

    registry = get_registry()
    component = registry.resolve("scheduler", "multiplicative")
    params = registry.validate_params(component, {"lr_lambda": "0.5"})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = registry.build(component, params, optimizer=optimizer, run=None)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.125)


# -- a closed stdout never stops training --------------------------------------------------------


@pytest.mark.parametrize("reader", ["true", "head -1"])
def test_train_into_a_closed_pipe_finishes_the_run(tmp_path, small_spec, reader):
    small_spec["trainer"]["output_dir"] = str(tmp_path / "runs")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(small_spec))
    tk = f"{sys.executable} -c 'from torchtk.core.cli import main; main()' train {spec}"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {tk} | {reader}"], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert "BrokenPipe" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert last["epoch"] == small_spec["trainer"]["epochs"]
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert (run_dir / "metrics.json").exists()
