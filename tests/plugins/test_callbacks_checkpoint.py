"""checkpoint: exactly the top k remain, named by epoch and value, listed in metrics.json;
every_n_epochs, keep_last, and an interrupted run resumed identically with ema and checkpoint on."""

from __future__ import annotations

import json

import pytest
import torch

import torchtk
from torchtk.core.engine import RunInterrupted
from torchtk.testing import registry_with
from tests.core.test_scheduler_stepping import SteppingPlugin


def extra_files(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name not in ("last.pt", "best.pt"))


@pytest.mark.parametrize("mode,monitor", [("min", "val_loss"), ("max", "val_accuracy")])
def test_exactly_the_top_k_remain_and_metrics_json_lists_them(small_spec, mode, monitor):
    small_spec["optimizer"]["params"]["lr"] = 0.1
    small_spec["callbacks"] = [{"name": "checkpoint", "params": {"monitor": monitor, "mode": mode, "save_top_k": 2}}]
    small_spec["trainer"]["epochs"] = 6
    result = torchtk.train(small_spec)
    ranked = sorted(result.history, key=lambda row: (row[monitor] if mode == "min" else -row[monitor], row["epoch"]))
    expected = [f"epoch{row['epoch']:03d}-{monitor}={row[monitor]:.4f}.pt" for row in ranked[:2]]
    assert extra_files(result.run_dir) == sorted(expected)
    listed = json.loads((result.run_dir / "metrics.json").read_text())["checkpoints"]
    assert [entry["file"] for entry in listed] == [f"checkpoints/{name}" for name in expected]
    for entry in listed:
        payload = torch.load(result.run_dir / entry["file"], weights_only=True)
        assert payload["epoch"] == entry["epoch"]


def test_every_n_epochs_keep_all_and_no_last(small_spec):
    small_spec["callbacks"] = [{"name": "checkpoint", "params": {"save_top_k": -1, "every_n_epochs": 2,
                                                                 "keep_last": False}}]
    small_spec["trainer"]["epochs"] = 5
    result = torchtk.train(small_spec)
    assert [name[:8] for name in extra_files(result.run_dir)] == ["epoch002", "epoch004"]
    assert not (result.run_dir / "checkpoints" / "last.pt").exists()
    assert (result.run_dir / "checkpoints" / "best.pt").exists()


def test_interrupted_run_with_ema_and_checkpoint_resumes_identically(small_spec):
    registry = registry_with(SteppingPlugin())
    small_spec["optimizer"]["params"]["lr"] = 0.1
    small_spec["callbacks"] = [{"name": "ema", "params": {"decay": 0.9}},
                               {"name": "checkpoint", "params": {"save_top_k": 2}}]
    small_spec["trainer"]["epochs"] = 5
    straight = torchtk.train(small_spec, registry=registry)
    small_spec["callbacks"].append({"name": "stop_after", "params": {"epoch": 3}})
    with pytest.raises(RunInterrupted):
        torchtk.train(small_spec, registry=registry)
    run_dir = max((p for p in straight.run_dir.parent.iterdir() if p != straight.run_dir), key=lambda p: p.name)
    resumed = torchtk.train(small_spec, registry=registry, resume=run_dir)
    assert resumed.history == straight.history
    assert extra_files(resumed.run_dir) == extra_files(straight.run_dir)
    a, b = (torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=True) for r in (straight, resumed))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    ema_a, ema_b = (p["callbacks"]["callbacks[0]:ema"]["average"] for p in (a, b))
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
