"""benchmarks/gpu_check.py runs on CPU with tiny sizes and prints its one table: every
configuration trained by the engine and by the hand-written loop, with a ratio."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_on_cpu_and_prints_one_row_per_configuration(tmp_path):
    # 32-pixel images: at 16, resnet18's layer4 sees 1x1 maps, and torch 2.14.1's CPU bf16 autocast made its
    # weights nan in 2 of 12 plain-torch runs of 4 SGD steps (0 of 12 at 32); the engine then refuses the checkpoint
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[1])}
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--samples", "32", "--image", "32",  # not 16: see below
                           "--batch", "16", "--epochs", "2", "--threads", "1"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("resnet18, 32 fake 32x32 images in batches of 16, 2 epochs per run")
    rows = [re.match(r"(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line) for line in lines[2:]]
    measured = {m.group(1): [float(v) for v in m.groups()[1:]] for m in rows if m}
    assert set(measured) == {"fp32", "fp32 + tf32", "bf16 autocast", "bf16 autocast + channels_last",
                             "bf16 DataLoader: pin_memory, non_blocking"}
    for engine, hand, ratio in measured.values():
        assert engine > 0 and hand > 0 and abs(ratio - engine / hand) < 0.002
    skipped = [line.split("  ")[0] for line in lines if "skipped on CPU" in line]
    assert skipped == ["fp16 autocast + GradScaler", "fp16 + GradScaler + channels_last",
                       "bf16 + channels_last + torch.compile"]
    assert lines[-1].startswith("ratio engine/hand: min ")
