"""``tk lr-find``: the exponential lr range test, its suggestion, and that it changes nothing else."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from torchtk.core.lr_find import exponential_lrs, find_lr, smooth, suggest
from torchtk.core.spec import bundled_examples


def test_the_lrs_grow_exponentially_from_min_to_max():
    lrs = exponential_lrs(1e-7, 10.0, 100)
    assert len(lrs) == 100 and lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = {round(b / a, 9) for a, b in zip(lrs, lrs[1:])}
    assert len(ratios) == 1  # one constant factor per update


def test_smoothing_is_the_bias_corrected_moving_average():
    losses = [1.0, 3.0, 2.0]
    beta = 0.98
    average, expected = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        expected.append(average / (1 - beta ** (i + 1)))
    assert smooth(losses) == pytest.approx(expected)
    assert smooth([5.0])[0] == pytest.approx(5.0)  # corrected: no pull towards 0 at the start


def test_the_suggestion_is_at_the_steepest_descent_of_the_loss():
    lrs = exponential_lrs(1e-6, 1.0, 121)  # 20 points per decade
    centre = -3.0  # the loss falls fastest at lr 1e-3 (a logistic step in log10(lr))
    losses = [1.0 - 0.8 / (1 + math.exp(-4 * (math.log10(lr) - centre))) for lr in lrs]
    assert math.log10(suggest(lrs, losses)) == pytest.approx(centre, abs=0.05)


def test_the_suggestion_leaves_out_the_first_points_and_needs_three():
    lrs = exponential_lrs(1e-6, 1.0, 50)
    losses = [10.0 - 5.0 * (i < 3) - 0.1 * i for i in range(50)]  # a steep drop among the first 10 points only
    losses[20] -= 2.0  # the steepest descent after them is into point 20
    assert suggest(lrs, losses) in (lrs[19], lrs[20])
    assert suggest(lrs[:2], losses[:2]) is None
    assert suggest(lrs[:5], [5.0, 4.0, 1.0, 0.9, 0.8]) in lrs[:5]  # too few to skip any: all are used


def test_find_lr_stops_when_the_loss_diverges(small_spec):
    result = find_lr(small_spec, min_lr=1e-4, max_lr=1e3, steps=60)
    assert result.stopped and len(result.lrs) < 60
    assert result.smoothed[-1] > 4 * min(result.smoothed[:-1])
    assert result.lrs == exponential_lrs(1e-4, 1e3, 60)[:len(result.lrs)]
    assert result.suggestion in result.lrs


def spec_copy(tmp_path: Path) -> Path:
    path = tmp_path / "rings.json"
    shutil.copy(bundled_examples()["rings"], path)
    return path


def test_tk_lr_find_on_rings_writes_the_plot_suggests_an_lr_and_changes_nothing_else(tk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # rings writes runs under ./runs: none may appear
    spec = spec_copy(tmp_path)
    before = spec.read_bytes(), spec.stat().st_mtime_ns
    result = tk("lr-find", spec)
    assert result.exit_code == 0, result.stderr
    found = re.search(r"suggested lr: (\S+)", result.stdout)
    assert found and 1e-7 <= float(found.group(1)) <= 10
    assert f"--set optimizer.params.lr={found.group(1)}" in result.stdout
    assert (tmp_path / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr_find.png", "rings.json"]  # no run directory
    assert (spec.read_bytes(), spec.stat().st_mtime_ns) == before


def test_tk_lr_find_out_json_and_overrides(tk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "plots" / "sweep.png"
    result = tk("lr-find", "rings", "--set", "data.batch_size=200", "--steps", "30", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["plot"] == str(out) and out.read_bytes()[:4] == b"\x89PNG"
    assert len(data["lr"]) == data["updates"] <= 30 and 1e-7 <= data["suggested_lr"] <= 10
    assert data["command"] == (f"tk train rings --set data.batch_size=200 "
                               f"--set optimizer.params.lr={data['suggested_lr']:.3g}")
    assert not (tmp_path / "lr_find.png").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--min-lr", "0"], "--min-lr 0: give a learning rate > 0"),
    (["--min-lr", "1e-3", "--max-lr", "1e-4"], "--max-lr 0.0001: give a learning rate above --min-lr 0.001"),
    (["--steps", "1"], "--steps 1: give at least 2 updates"),
    (["--set", "trainer.limit_train_batches=0"], "trainer.limit_train_batches: give a number of batches"),
    (["--set", "optimizer.params.lr=-1"], "optimizer.params.lr"),
])
def test_bad_values_give_exit_2_and_one_message(tk, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = tk("lr-find", "rings", *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # no plot, no run directory


def test_a_bad_spec_file_gives_exit_2(tk, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "model": "mlp", "data": "rings", "loss": "no_such_loss"}))
    result = tk("lr-find", bad, "--out", tmp_path / "lr.png")
    assert result.exit_code == 2 and "loss[0]" in result.stderr
    assert not (tmp_path / "lr.png").exists()


def test_param_groups_keep_their_ratio_to_the_base_lr(small_spec):
    from torchtk.core.assembly import build_parts
    from torchtk.core.distributed import SingleProcess
    from torchtk.core.lr_find import group_ratios
    from torchtk.core.spec import load_resolved

    import torch

    small_spec["freeze"] = [{"name": "layer_lr", "params": {"groups": [
        {"modules": ["2"], "lr_scale": 3.0, "name": "head"}]}}]
    resolved = load_resolved(small_spec)
    parts = build_parts(resolved, SingleProcess(torch.device("cpu")), upto="optimizer")
    assert sorted(group_ratios(parts.optimizer, resolved)) == pytest.approx([1.0, 3.0])
