"""tk plan: every update's lr and weight decay, per param group, without training."""

from __future__ import annotations

import copy
import math

import pytest

import torchtk
from torchtk.core.plan import compute_plan
from torchtk.testing import registry_with

from tests.core.test_scheduler_stepping import SteppingPlugin


def test_warmup_then_cosine_example_per_update():
    plan = compute_plan("rings-warmup-cosine")
    per_epoch = plan.run.steps_per_epoch
    assert per_epoch == 49 and len(plan.updates) == 20 * per_epoch
    lrs = plan.lrs(0)
    assert lrs[0] == pytest.approx(0.02)  # warmup starts at start_factor * lr
    assert lrs[per_epoch - 1] == pytest.approx(0.02)  # per-epoch warmup: constant within the epoch
    assert lrs[per_epoch] == pytest.approx(0.2 * (0.1 + 0.9 / 3))
    assert lrs[3 * per_epoch] == pytest.approx(0.2)  # cosine starts at the full lr
    assert lrs[-1] == pytest.approx(0.0001 + (0.2 - 0.0001) * (1 + math.cos(math.pi * 16 / 17)) / 2)
    assert plan.updates[-1].epoch == 20 and plan.updates[-1].weight_decay == [0.0001]
    assert plan.schedulers[0]["label"] == "warmup -> cosine_annealing"


def test_plan_matches_what_the_run_logs(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = [{"name": "warmup", "interval": "step", "params": {"length": 5}},
                         {"name": "multiplicative", "params": {"lr_lambda": "0.5"}}]
    spec["trainer"]["accumulate_grad_batches"] = 5
    plan = compute_plan(spec)
    assert plan.run.steps_per_epoch == 3  # 12 batches, 5 per update
    result = torchtk.train(spec)
    last_updates = [u for u in plan.updates if u.update % plan.run.steps_per_epoch == 0]
    assert [row["lr"] for row in result.history] == pytest.approx([u.lr[0] for u in last_updates])


def test_per_group_lrs_and_weight_decay(small_spec, tmp_path):
    registry = registry_with(SteppingPlugin())
    spec = copy.deepcopy(small_spec)
    spec["freeze"] = [{"name": "two_groups", "params": {"head_lr": 0.001}}]
    spec["optimizer"] = {"name": "adamw", "params": {"lr": 0.01, "weight_decay": 0.05}}
    spec["scheduler"] = {"name": "step", "params": {"step_size": 1, "gamma": 0.5}}
    plan = compute_plan(spec, registry=registry)
    assert plan.groups == ["body", "head"]
    first, last = plan.updates[0], plan.updates[-1]
    assert first.lr == [0.01, 0.001] and first.weight_decay == [0.05, 0.0]
    assert last.lr == pytest.approx([0.01 / 4, 0.001 / 4])
    assert not (tmp_path / "runs").exists()  # nothing trained, no run directory


def test_reduce_on_plateau_is_explained(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["scheduler"] = {"name": "warmup", "params": {"length": 1, "then": {"name": "reduce_on_plateau",
                                                                             "params": {"patience": 0}}}}
    plan = compute_plan(spec)
    assert set(plan.lrs(0)[plan.run.steps_per_epoch:]) == {0.01}
    assert "reduce_on_plateau" in plan.notes[0]


def test_tk_plan_renders_a_plot_and_a_table(tk, tmp_path):
    png = tmp_path / "lr.png"
    result = tk("plan", "rings-warmup-cosine", "-o", png)
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "980 updates" in result.stdout and "warmup -> cosine_annealing (per epoch)" in result.stdout
    assert "lr default" in result.stdout and "▁" in result.stdout and f"wrote {png}" in result.stdout


def test_tk_plan_json(tk, tmp_path):
    result = tk("plan", "rings-warmup-cosine", "--set", "trainer.epochs=4", "-o", tmp_path / "lr.png", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["total_updates"] == len(data["updates"]) == 4 * data["steps_per_epoch"]
    assert data["updates"][0] == {"update": 1, "epoch": 1, "lr": [pytest.approx(0.02)], "weight_decay": [0.0001]}
    assert data["plot"].endswith("lr.png")


def test_tk_plan_bad_spec_exits_2(tk, spec_file, small_spec):
    small_spec["scheduler"] = {"name": "lambda", "params": {"lr_lambda": "open('x')"}}
    result = tk("plan", spec_file(small_spec))
    assert result.exit_code == 2
    assert "scheduler[0].params.lr_lambda" in result.stderr and "Traceback" not in result.stderr


def test_lr_png_scale_is_log_when_the_lr_spans_a_decade_or_when_asked():
    plan = compute_plan("rings-warmup-cosine")  # 0.2 down to 0.0018: more than a decade
    assert plan.figure().axes[0].get_yscale() == "log"
    assert plan.figure(log_scale=False).axes[0].get_yscale() == "linear"
    flat = compute_plan("rings", overrides=["trainer.epochs=5"])  # step decay after 10 epochs: constant here
    assert flat.figure().axes[0].get_yscale() == "linear"
    assert flat.figure(log_scale=True).axes[0].get_yscale() == "log"
    assert "(log scale)" in plan.figure().axes[0].get_ylabel()


def test_tk_plan_log_scale_options(tk, tmp_path):
    for option in ("--log-scale", "--linear-scale"):
        result = tk("plan", "rings", "--set", "trainer.epochs=2", "-o", tmp_path / f"{option}.png", option)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / f"{option}.png").read_bytes().startswith(b"\x89PNG")


def test_the_table_says_which_updates_it_samples(tk, tmp_path):
    plan = compute_plan("rings-warmup-cosine")
    assert plan.sample_sentence() == "rows: the first update of 12 of the 20 epochs, and the last (980)"
    assert [u.update for u in plan.sample()][:3] == [1, 99, 148] and len(plan.sample()) == 13
    short = compute_plan("rings", overrides=["trainer.epochs=5"])
    assert short.sample_sentence() == "rows: every 49th of 245 updates (each epoch's first) and the last"
    assert [u.update for u in short.sample()] == [1, 50, 99, 148, 197, 245]
    shown = tk("plan", "rings-warmup-cosine", "-o", tmp_path / "lr.png")
    assert "rows: the first update of 12 of the 20 epochs, and the last (980)" in shown.stdout


def test_sample_sentence_for_one_update_per_epoch_and_ordinals(small_spec):
    from torchtk.core.plan import _ordinal

    spec = copy.deepcopy(small_spec)
    spec["trainer"]["accumulate_grad_batches"] = 12  # 12 batches: one update per epoch
    plan = compute_plan(spec)
    assert plan.run.steps_per_epoch == 1 and plan.sample_sentence() == "rows: every update (3)"
    assert [_ordinal(n) for n in (2, 3, 11, 12, 21, 49, 101, 112)] == \
        ["2nd", "3rd", "11th", "12th", "21st", "49th", "101st", "112th"]
