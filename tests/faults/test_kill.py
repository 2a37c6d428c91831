"""SIGKILL at random moments, half of them aimed at a checkpoint write: after every kill
``last.pt`` loads with ``weights_only=True``, ``--resume`` finishes, ``best.pt`` holds the
epoch ``metrics.json`` names as the best, and no temporary file is left.

The runs are forked from a server that imported torch once (``fork_server.py``), so the
24 kills and 24 resumes take 31-47 s on this project's shared 2-core machine at load 3-5
(96 s at load 10); each child runs what the ``tk`` console script runs and is killed
like it.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.faults.conftest import ROOT, temporaries

pytestmark = pytest.mark.faults

KILLS = 24


class ForkServer:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fork_server.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.ask(None) == {"ready": True}

    def ask(self, request):
        if request is not None:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, argv, log):
        return self.ask({"argv": [str(a) for a in argv], "log": str(log)})["pid"]

    def wait(self, pid):
        return self.ask({"wait": pid})["status"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def epoch_of(path: Path):
    return torch.load(path, weights_only=True, map_location="cpu")["epoch"]


def kill_at_random(pid, rng):
    time.sleep(rng.uniform(0.0, 0.8))
    os.kill(pid, signal.SIGKILL)


def kill_in_a_write(pid, checkpoints, limit=5.0):
    """Kill as soon as a checkpoint's temporary file exists (a write is under way)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not any(name.endswith(".tmp") for name in os.listdir(checkpoints)):
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)


def check_finished(run_dir: Path, epochs: int, log: Path) -> None:
    """After a --resume that ran to its end: everything agrees, nothing is left over."""
    assert epoch_of(run_dir / "checkpoints" / "last.pt") == epochs, log.read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == epochs and metrics["last"]["epoch"] == epochs
    assert epoch_of(run_dir / "checkpoints" / "best.pt") == metrics["best"]["epoch"], "best.pt is not the best epoch"
    assert len((run_dir / "history.csv").read_text().splitlines()) == epochs + 1
    assert temporaries(run_dir) == [], "a temporary file was left behind"


@pytest.fixture
def kill_spec(spec_file, small_spec):
    """One batch per epoch and a 264k-parameter model: most of an epoch is spent writing
    its two 3 MB checkpoints (last.pt, then best.pt while val_loss improves)."""
    spec = copy.deepcopy(small_spec)
    spec["model"]["params"]["hidden"] = [256, 256]
    spec["data"].update(params={"n_positive": 100, "n_negative": 100}, batch_size=100, val_split=0.5)
    spec["optimizer"]["params"]["lr"] = 0.001
    spec["scheduler"] = []
    spec["trainer"]["epochs"] = 100000
    return spec_file(spec)


def test_sigkill_at_random_moments_never_loses_the_last_checkpoint(kill_spec, tmp_path):
    rng = random.Random(13)
    server = ForkServer()
    log = tmp_path / "tk.log"
    killed_in_writes = repaired = 0
    try:
        pid = server.start(["train", kill_spec], log)
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").glob("*/checkpoints/last.pt")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        (run_dir,) = (tmp_path / "runs").iterdir()
        checkpoints = run_dir / "checkpoints"
        finished = 0
        for kill in range(KILLS):
            if kill:  # continue the run (all its epochs) and kill it again
                pid = server.start(["train", kill_spec, "--resume", run_dir], log)
            (kill_in_a_write if kill % 2 else kill_at_random)(*((pid, checkpoints) if kill % 2 else (pid, rng)))
            assert server.wait(pid) == -signal.SIGKILL, log.read_text()
            killed_in_writes += bool(temporaries(checkpoints))
            last = torch.load(checkpoints / "last.pt", weights_only=True)  # a pickled object would be refused
            assert last["epoch"] >= finished, "a kill took last.pt back to an older epoch"
            best_epoch = last["state"]["best_row"].get("epoch")
            repaired += best_epoch == last["epoch"] and epoch_of(checkpoints / "best.pt") != best_epoch
            finished = last["epoch"] + 1
            pid = server.start(["train", kill_spec, "--resume", run_dir, "--set", f"trainer.epochs={finished}"], log)
            assert server.wait(pid) == 0, log.read_text()[-3000:]
            check_finished(run_dir, finished, log)
    finally:
        server.close()
    print(f"{KILLS} kills: {killed_in_writes} during a checkpoint write (a temporary file left), "
          f"{repaired} between last.pt and best.pt (best.pt written again on resume); {finished} epochs")
    assert killed_in_writes >= 1, "no kill landed in a checkpoint write: the test lost its point"
