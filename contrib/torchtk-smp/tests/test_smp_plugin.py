"""The installed distribution: conformance, the unet clash, the bundled example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from torchtk.core.registry import Registry

HERE = Path(__file__).resolve().parents[1]


def test_the_plugin_conforms():
    from torchtk import testing

    params = {"model:" + name: {"encoder_name": "resnet18"} for name in ("unet", "fpn", "linknet")}
    report = testing.check_plugin("torchtk-smp", params=params,  # the plugin test kit: by behaviour
                                  only=["model:fpn", "model:linknet", "loss:*"])
    assert report == [], str(report)


def test_unet_keeps_the_builtin_and_smp_scope_picks_smps():
    registry = Registry()
    assert registry.resolve("model", "unet").plugin == "torchtk.plugins.segmentation"
    assert registry.resolve("model", "smp::unet").distribution == "torchtk-smp"
    assert registry.resolve("model", "unet_plus_plus").name == "unetplusplus"
    [clash] = [c for c in registry.clashes() if c[:2] == ("model", "unet")]
    assert [c.plugin for c in clash[3]] == ["smp"]


def test_the_bundled_example_trains(tmp_path):
    shutil.copy(HERE / "examples" / "smp-shapes.json", tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    result = subprocess.run([sys.executable, "-m", "torchtk", "train", "smp-shapes.json", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / json.loads(result.stdout)["run_dir"]
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_iou" in history[0]
    assert json.loads((run_dir / "spec.json").read_text())["model"]["name"] == "smp::unet"
