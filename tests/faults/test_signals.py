"""SIGINT and SIGTERM: from the first moment ``tk`` runs its own code, at any point of the
build, mid-epoch (resumed bit for bit), and a second signal while the first is handled."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import torchtk
from torchtk.core.errors import BUILD_INTERRUPTED, RunInterrupted
from tests.faults.conftest import handlers_installed, tk_process

pytestmark = pytest.mark.faults

SIGNALS = [signal.SIGINT, signal.SIGTERM]


def _start(args, pythonpath=None):
    return tk_process(args, pythonpath, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_handlers(process, limit=60.0):
    deadline = time.monotonic() + limit
    while not handlers_installed(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, "tk never installed its signal handlers"
        time.sleep(0.002)


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_any_early_moment_is_exit_130_and_writes_nothing(spec_file, tmp_path, signum):
    """Signalled 0 to 1.5 s after tk installed its handlers (which it does before importing
    typer's app, torch or any plugin): during imports, the registry, the build. Before,
    the finding was: sometimes swallowed (the run trained to the end, exit 0), sometimes a
    bogus error from a module left half-imported, or a traceback."""
    path = spec_file()
    for offset in (0.0, 0.05, 0.2, 0.5, 1.0, 1.5):
        process = _start(["train", path])
        _wait_for_handlers(process)
        time.sleep(offset)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, (offset, process.returncode, stderr)
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, (offset, stderr)
        runs = list((tmp_path / "runs").glob("*"))
        if runs:  # the build was over: the run was interrupted while training, and says where to resume
            assert "interrupted. " in stderr, (offset, stderr)
            for run in runs:
                shutil.rmtree(run)
        else:
            assert stderr.strip().splitlines()[-1] == f"error: {BUILD_INTERRUPTED}", (offset, stderr)


def test_a_sigterm_before_tk_runs_its_own_code_ends_the_process_and_writes_nothing(spec_file, tmp_path):
    process = _start(["train", spec_file()])
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (-signal.SIGTERM, 130), stderr
    assert "Traceback" not in stderr and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("second", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_while_the_first_is_handled_exits_130_at_once(spec_file, small_spec, tmp_path,
                                                                     faults_plugin, second):
    """The first signal (SIGTERM, sent by the run itself in epoch 2) is being handled, with
    on_exception taking 30 s; the second ends tk at once: exit 130, no traceback, last.pt kept."""
    record = tmp_path / "on_exception.txt"
    small_spec["callbacks"] = [
        {"name": "signal_at", "params": {"signal": "SIGTERM", "step": 15, "marker": str(tmp_path / "sent")}},
        {"name": "record_exception", "params": {"path": str(record), "sleep": 30.0}}]
    small_spec["trainer"]["epochs"] = 3
    process = _start(["train", spec_file(small_spec)], faults_plugin)
    deadline = time.monotonic() + 120
    while not record.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    started = time.monotonic()
    process.send_signal(second)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 20, "the second signal did not end tk at once"
    assert "interrupted again: exiting now" in stderr and "Traceback" not in stderr
    assert record.read_text() == "KeyboardInterrupt"
    (run,) = (tmp_path / "runs").iterdir()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1


def _weights(run_dir):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return checkpoint["model"], checkpoint["optimizer"]["state"]


@pytest.mark.parametrize("signame, via", [("SIGINT", "tk"), ("SIGTERM", "tk"), ("SIGTERM", "torchtk.train")])
def test_a_signal_mid_epoch_keeps_last_pt_and_the_resumed_run_is_bit_identical(tk, spec_file, small_spec, tmp_path,
                                                                              faults_plugin, signame, via):
    """A real signal, delivered through torchtk's handler at update 17 (epoch 2 of 3, batch
    5 of 12); the resumed run ends with the weights, optimizer state and history.csv of a
    run that was never interrupted."""
    marker = tmp_path / "sent"
    small_spec["callbacks"] = [{"name": "signal_at", "params": {"signal": signame, "step": 17, "marker": str(marker)}}]
    path = spec_file(small_spec)
    marker.touch()  # the reference run: the same spec, never signalled
    reference = tk("train", path, "--json")
    assert reference.exit_code == 0, reference.stderr
    reference_dir = Path(reference.json()["run_dir"])
    marker.unlink()
    if via == "tk":
        interrupted = tk("train", path)
        assert interrupted.exit_code == 130, interrupted.stderr
        assert "interrupted. Last good checkpoint" in interrupted.stderr and "--resume" in interrupted.stderr
    else:
        with pytest.raises(RunInterrupted, match="--resume"):
            torchtk.train(json.loads(path.read_text()))
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p != reference_dir]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = tk("train", path, "--resume", run_dir, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    model, optimizer = _weights(run_dir)
    expected_model, expected_optimizer = _weights(reference_dir)
    assert all(torch.equal(model[k], expected_model[k]) for k in expected_model)
    assert all(torch.equal(optimizer[i][k], expected_optimizer[i][k])
               for i in expected_optimizer for k in expected_optimizer[i] if torch.is_tensor(expected_optimizer[i][k]))
    assert (run_dir / "history.csv").read_bytes() == (reference_dir / "history.csv").read_bytes()
