"""The headline example end to end: PNG files written by the example, stage 1 on task A,
stage 2 fine-tuned on task B from stage 1's best.pt (new head, init, feature extraction,
per-layer lr, gradual unfreezing), better than the same network trained from scratch."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torchtk

EXAMPLE = Path(__file__).resolve().parents[1] / "torchtk" / "examples" / "finetune"


def test_the_two_stage_example_transfers_what_stage_1_learned(tmp_path, monkeypatch):
    # the example as `make finetune` lays it out: the specs and finetune-data/ in one folder (the specs' data
    # paths are relative to their own folder), run from another directory, where runs/ goes
    example = tmp_path / "finetune"
    example.mkdir()
    for name in ("stage1.json", "stage2.json"):
        shutil.copy(EXAMPLE / name, example / name)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    spec = importlib.util.spec_from_file_location("make_images", EXAMPLE / "make_images.py")
    make_images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_images)
    assert make_images.write(example / "finetune-data") == {"task-a": 1260, "task-b": 750}  # train + val + test
    stage1 = torchtk.train(str(example / "stage1.json"))
    assert stage1.best["val_accuracy"] >= 0.9
    assert stage1.run_dir.parent == Path("runs")  # outputs stay relative to the working directory
    saved = json.loads((stage1.run_dir / "spec.json").read_text())["data"]["params"]
    assert saved["train"] == str(example / "finetune-data" / "task-a" / "train")  # spec.json: absolute paths
    weights = f"model.params.weights={stage1.run_dir / 'checkpoints' / 'best.pt'}"  # --set: relative to the cwd
    stage2 = torchtk.train(str(example / "stage2.json"), overrides=[weights])
    log = (stage2.run_dir / "train.log").read_text()
    assert "fc2.weight, fc2.bias newly initialised" in log and "'fc1' joins the optimizer" in log
    assert set(stage2.history[-1]) >= {"lr/head", "lr/fc1", "lr/convs"} and "lr/fc1" not in stage2.history[0]
    classes = ["cross", "diamond", "hbar", "ring", "vbar"]
    assert json.loads((stage2.run_dir / "metrics.json").read_text())["classes"] == classes
    assert {"train_accuracy", "val_f1"} <= set(stage2.history[-1])  # the metrics the example logs
    matrix = json.loads((stage2.run_dir / "confusion_matrix.json").read_text())
    assert matrix["labels"] == classes and matrix["epoch"] == stage2.best["epoch"]
    assert (stage2.run_dir / "confusion_matrix.png").stat().st_size > 0
    scratch = torchtk.train(str(example / "stage2.json"),
                            overrides=["model.params.weights=null", "freeze=[]", "init=[]"])
    assert stage2.best["val_accuracy"] >= 0.85
    assert stage2.best["val_accuracy"] > scratch.best["val_accuracy"] + 0.05
