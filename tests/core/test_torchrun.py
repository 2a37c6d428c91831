"""Rings under torchrun with 2 CPU processes (gloo), against one process at the same global
batch (batch_size 2 x 50 against 1 x 100).

Tolerance: with 600 training samples (a multiple of 2) every global batch is exactly the
one-process batch, dealt out, so the runs differ only in float32 summation order (two
half-batch gradient means averaged by the all-reduce against one mean over 100 samples).
Measured (3 epochs, both paths): at most 5.1e-8 on the losses, none on accuracy and AUROC.
The test allows 1e-5 on losses, one validation sample (1/200) on accuracy and 1e-3 on
AUROC (about 7 swapped pairs), so a borderline prediction flipping by rounding does not
fail it, while a real difference (a sample counted twice or missed, gradients not
averaged: 1e-2 and more) does. The four runs under torchrun take about 3.5 minutes at load
11 on the project's shared 2-core machine (65 s of CPU).
"""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import torchtk

SPEC = {
    "name": "ddp", "seed": 0,
    "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [16], "out_features": 1}},
    "data": {"name": "rings", "params": {"n_positive": 200, "n_negative": 600}, "batch_size": 50,
             "val_split": 0.25},
    "loss": "bce_with_logits",
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "scheduler": {"name": "step", "params": {"step_size": 2, "gamma": 0.5}},
    "callbacks": [{"name": "grad_clip", "params": {"max_norm": 20}}],
    "metrics": ["accuracy"],
    "trainer": {"epochs": 3, "device": "cpu"},
}
LOSS_TOLERANCE, ACCURACY_TOLERANCE = 1e-5, 1 / 200 + 1e-9
AUROC_TOLERANCE = 1e-3  # rank-based: outputs within rounding of each other may swap order, 1 / (50 * 150) a pair
PROCESSES = 2


def _spec(tmp_path, **data):
    spec = copy.deepcopy(SPEC)
    spec["data"].update(data)
    spec["trainer"]["output_dir"] = str(tmp_path / "runs")
    return spec


def _torchrun(spec_path, *args, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={PROCESSES}", "--standalone",
               "-m", "torchtk", "train", str(spec_path), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _finished(process, limit=300):
    output, _ = process.communicate(timeout=limit)
    return process.returncode, output


def _history(run_dir):
    with open(Path(run_dir) / "history.csv") as handle:
        return [{key: float(value) for key, value in row.items() if value} for row in csv.DictReader(handle)]


def _one_process(spec, epochs=None):
    """The same spec in this process at the global batch (batch_size x processes)."""
    spec = copy.deepcopy(spec)
    spec["data"]["batch_size"] *= PROCESSES
    spec["data"]["num_workers"] = 0  # the in-memory path: the order is the same, see the shard tests
    spec["trainer"]["output_dir"] += "-one"
    if epochs is not None:
        spec["trainer"]["epochs"] = epochs
    return torchtk.train(spec, progress=False).history


def _assert_same(history, reference):
    assert len(history) == len(reference)
    tolerances = {"train_loss": LOSS_TOLERANCE, "val_loss": LOSS_TOLERANCE, "val_accuracy": ACCURACY_TOLERANCE,
                  "val_auroc": AUROC_TOLERANCE, "lr": 0.0, "epoch": 0.0}
    for row, expected in zip(history, reference):
        assert row.keys() == expected.keys()
        for key, value in expected.items():
            assert abs(row[key] - value) <= tolerances[key], (row["epoch"], key, row[key], value)


def _only_run_dir(tmp_path):
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 0 alone made it
    return runs[0]


@pytest.mark.parametrize("path", ["in-memory", "dataloader"])
def test_two_processes_match_one_at_the_same_global_batch(tmp_path, spec_file, path):
    """The DataLoader path (one worker) runs unshuffled, where DistributedSampler's shards are
    the one-process batches dealt out as well; shuffled shards are checked in test_distributed."""
    data = {} if path == "in-memory" else {"num_workers": 1, "shuffle": False}
    spec = _spec(tmp_path, **data)
    if path == "dataloader":  # a torchmetrics metric too: its states are gathered over the processes
        spec["metrics"] = ["accuracy", "auroc"]
    code, output = _finished(_torchrun(spec_file(spec)))
    assert code == 0, output
    run = _only_run_dir(tmp_path)
    log = (run / "train.log").read_text()
    assert log.count("start: epochs") == 1 and log.count("epoch 3 ") == 1  # one process wrote it
    assert output.count("best val_loss") == 1  # one process printed the result
    assert (run / "checkpoints" / "last.pt").exists()
    reference = copy.deepcopy(spec)
    reference["data"].update(shuffle=data.get("shuffle", True))
    _assert_same(_history(run), _one_process(reference))


def _rank_pid(parent, rank, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no process of rank {rank}")


def _wait_for_epoch(tmp_path, epoch, process, limit=300):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        logs = list((tmp_path / "runs").glob("*/train.log"))
        if logs and f"epoch {epoch} " in logs[0].read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"epoch {epoch} never ended")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the ranks' processes in /proc")
def test_sigterm_on_one_rank_stops_all_and_the_run_resumes(tmp_path, spec_file):
    spec = _spec(tmp_path)
    spec["trainer"]["epochs"] = 400  # far more than run before the signal
    path = spec_file(spec)
    process = _torchrun(path)
    _wait_for_epoch(tmp_path, 2, process)
    os.kill(_rank_pid(process.pid, 1), signal.SIGTERM)
    code, output = _finished(process, limit=120)
    assert code != 0 and output.count("exitcode  : 130") == PROCESSES, output  # both ranks stopped as interrupted
    run = _only_run_dir(tmp_path)
    assert "interrupted. Last good checkpoint" in (run / "train.log").read_text()
    done = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"]
    assert 2 <= done < 400
    epochs = done + 2
    code, output = _finished(_torchrun(path, "--resume", str(run), "--set", f"trainer.epochs={epochs}"))
    assert code == 0, output
    assert _only_run_dir(tmp_path) == run
    _assert_same(_history(run), _one_process(spec, epochs=epochs))  # as if never interrupted
