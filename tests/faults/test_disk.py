"""A full disk and an output directory that becomes unwritable mid-run: one clear error
(exit 1) naming the file and the reason, the last good checkpoint intact (never replaced
by a truncated one), no temporary file left, and ``--resume`` works once there is room.

The full disk is real where a tmpfs can be mounted (root with CAP_SYS_ADMIN), and
simulated everywhere by a writer that raises ENOSPC; the unwritable directory is a real
``chmod`` where permissions apply (not for root, which CI is not), and simulated too.
"""

from __future__ import annotations

import errno
import os
import subprocess
import types
from pathlib import Path

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.core import outputs
from torchtk.core.errors import RunFailed
from torchtk.testing import registry_with
from tests.faults.conftest import temporaries

pytestmark = pytest.mark.faults


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, or a skip where none can be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def assert_kept_epoch_1(run_dir):
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["epoch"] == 1
    assert temporaries(run_dir) == []


def test_a_full_disk_fails_the_run_keeping_the_last_good_checkpoint(tk, spec_file, small_spec, small_disk,
                                                                   faults_plugin):
    filler = small_disk / "filler"
    small_spec["trainer"].update(output_dir=str(small_disk / "runs"), epochs=4)
    small_spec["callbacks"] = [{"name": "fill_disk", "params": {"epoch": 2, "path": str(filler)}}]
    path = spec_file(small_spec)
    result = tk("train", path)
    assert result.exit_code == 1, result.stderr
    (run,) = (small_disk / "runs").iterdir()
    assert result.stderr.startswith(f"error: the run failed in epoch 2: cannot write {run}/checkpoints/last.pt: "
                                    f"No space left on device. Last good checkpoint: {run}/checkpoints/last.pt"), (
        result.stderr)
    assert "Traceback" not in result.stderr
    assert_kept_epoch_1(run)
    filler.unlink()  # room again: the same command continues from epoch 1's checkpoint
    resumed = tk("train", path, "--resume", run)
    assert resumed.exit_code == 0, resumed.stderr
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 4
    assert temporaries(run) == []


class Full:
    """A file that takes ``budget`` more bytes and then raises ENOSPC, as a full disk does."""

    def __init__(self, handle, budget):
        self.handle, self.budget = handle, budget

    def write(self, data):
        if len(data) > self.budget:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def trigger_plugin(flag, epoch=2, action=None):
    """A callback ``trigger`` that sets ``flag["on"]`` (and calls ``action(state)``) at the
    end of ``epoch``, before that epoch's checkpoints are written."""
    module = types.ModuleType("trigger_plugin")

    class Trigger:
        @hookimpl
        def on_epoch_end(self, state):
            if state.epoch == epoch and not flag["on"]:
                flag["on"] = True
                if action is not None:
                    action(state)

    @hookimpl
    def register_components(register):
        register(Component("callback", "trigger", "Sets a flag at an epoch's end.", params=NoParams))

    @hookimpl
    def make_callback(name, params):
        return Trigger()

    module.register_components, module.make_callback = register_components, make_callback
    return registry_with(module)


def run_until_it_fails(small_spec, registry):
    small_spec["callbacks"] = ["trigger"]
    small_spec["trainer"]["epochs"] = 4
    with pytest.raises(RunFailed) as failed:
        torchtk.train(small_spec, registry=registry)
    assert failed.value.exit_code == 1
    (run,) = Path(small_spec["trainer"]["output_dir"]).iterdir()
    return str(failed.value), run


@pytest.mark.parametrize("budget", [0, 100, 3000])
def test_enospc_in_the_middle_of_a_checkpoint_write_never_replaces_the_good_one(small_spec, monkeypatch, budget):
    """torch.save mostly reports a failed write as its own RuntimeError ("unexpected pos
    704 vs 598"); the error names the disk, and last.pt stays epoch 1's, whole."""
    flag = {"on": False}
    create = outputs._create_temporary
    monkeypatch.setattr(outputs, "_create_temporary",
                        lambda path: (lambda tmp, handle: (tmp, Full(handle, budget) if flag["on"] else handle))(
                            *create(path)))
    message, run = run_until_it_fails(small_spec, trigger_plugin(flag))
    assert message.startswith(f"the run failed in epoch 2: cannot write {run}/checkpoints/last.pt: No space left on "
                              f"device. Last good checkpoint: {run}/checkpoints/last.pt"), message
    assert_kept_epoch_1(run)


@pytest.mark.parametrize("where", ["creating the temporary file", "renaming it"])
def test_an_output_directory_that_becomes_unwritable_fails_clearly(small_spec, monkeypatch, where):
    """Simulated (root ignores permissions): EACCES when the temporary file is created, or
    when it is renamed over last.pt (the directory lost its write permission in between)."""
    flag = {"on": False}
    refuse = PermissionError(errno.EACCES, "Permission denied")
    if where == "renaming it":
        replace = os.replace
        monkeypatch.setattr(outputs.os, "replace",
                            lambda a, b: (_ for _ in ()).throw(refuse) if flag["on"] else replace(a, b))
    else:
        opener = os.open
        monkeypatch.setattr(outputs.os, "open", lambda path, *a: (_ for _ in ()).throw(refuse)
                            if flag["on"] and str(path).endswith(".tmp") else opener(path, *a))
    message, run = run_until_it_fails(small_spec, trigger_plugin(flag))
    assert message.startswith(f"the run failed in epoch 2: cannot write {run}/checkpoints/last.pt: Permission "
                              f"denied. Last good checkpoint: {run}/checkpoints/last.pt"), message
    assert_kept_epoch_1(run)


def permissions_enforced(directory: Path) -> bool:
    """Whether this process is refused writing into a read-only directory (root is not)."""
    probe = directory / "read-only"
    probe.mkdir()
    os.chmod(probe, 0o555)
    try:
        (probe / "x").touch()
        return False
    except PermissionError:
        return True
    finally:
        os.chmod(probe, 0o755)


def test_a_checkpoints_directory_made_read_only_mid_run_fails_clearly(small_spec, tmp_path):
    if not permissions_enforced(tmp_path):
        pytest.skip("this process ignores directory permissions (root): the simulated test covers it")
    locked = []

    def lock(state):
        locked.append(state.run_dir / "checkpoints")
        os.chmod(locked[0], 0o555)

    try:
        message, run = run_until_it_fails(small_spec, trigger_plugin({"on": False}, action=lock))
    finally:
        for directory in locked:
            os.chmod(directory, 0o755)
    assert message.startswith(f"the run failed in epoch 2: cannot write {run}/checkpoints/last.pt: Permission "
                              f"denied. Last good checkpoint: {run}/checkpoints/last.pt"), message
    assert_kept_epoch_1(run)
