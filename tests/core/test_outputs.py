"""Atomic, streamed writes of a run's files: modes, failures, checkpoints."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from torchtk.core.outputs import RunDir, atomic_write_bytes, atomic_write_text, atomic_writer


@pytest.fixture
def umask():
    """Set the process umask for one test, and restore it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask", [0o027, 0o022, 0o077])
def test_new_files_get_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    reference = tmp_path / "reference"
    reference.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "bytes.bin", b"data")
    atomic_write_text(tmp_path / "text.txt", "text")
    with atomic_writer(tmp_path / "streamed.bin") as handle:
        handle.write(b"streamed")
    for name in ("bytes.bin", "text.txt", "streamed.bin"):
        assert mode(tmp_path / name) == mode(reference) == 0o666 & ~mask, name


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_checkpoints_follow_the_umask_too(tmp_path, umask):
    import torch

    umask(0o027)
    run = RunDir(tmp_path / "run")
    try:
        path = run.save_checkpoint({"w": torch.zeros(2)}, "last.pt")
    finally:
        run.close()
    assert mode(path) == 0o640


def test_importing_outputs_leaves_the_umask_alone():
    code = ("import os\n"
            "calls = []\n"
            "real = os.umask\n"
            "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
            "import torchtk.core.outputs\n"
            "print(calls)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_writes_replace_the_whole_file(tmp_path):
    target = tmp_path / "deep" / "er" / "f.json"  # missing directories are created
    atomic_write_text(target, json.dumps({"a": 1}))
    atomic_write_text(target, json.dumps({"b": 2}))
    assert json.loads(target.read_text()) == {"b": 2}
    assert os.listdir(target.parent) == ["f.json"]


def test_readers_see_the_old_file_until_the_writer_finishes(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with atomic_writer(target) as handle:
        handle.write(b"new, in part")
        assert target.read_bytes() == b"old"
        [temporary] = [p for p in tmp_path.iterdir() if p != target]
        assert temporary.name.startswith(".last.pt.") and temporary.name.endswith(".tmp")  # same directory
    assert target.read_bytes() == b"new, in part"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old and good")
    with pytest.raises(type(error)):
        with atomic_writer(target) as handle:
            handle.write(b"half of the new")
            raise error
    assert target.read_bytes() == b"old and good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_failing_first_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_writer(tmp_path / "new.bin") as handle:
            handle.write(b"x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_a_target_that_is_a_directory_fails_cleanly(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "taken", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_a_checkpoint_loads_with_weights_only(tmp_path):
    import torch

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    payload = {"epoch": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "history": [{"epoch": 1, "val_loss": 0.5}], "rng": torch.get_rng_state()}
    run = RunDir(tmp_path / "run")
    try:
        path = run.save_checkpoint(payload, "last.pt")
    finally:
        run.close()
    assert path == tmp_path / "run" / "checkpoints" / "last.pt"
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3 and loaded["history"] == payload["history"]
    assert torch.equal(loaded["model"]["weight"], model.weight)
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    assert torch.equal(loaded["rng"], payload["rng"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_a_checkpoint_that_fails_to_serialise_keeps_the_last_good_one(tmp_path):
    import torch

    run = RunDir(tmp_path / "run")
    try:
        good = run.save_checkpoint({"epoch": 1, "w": torch.ones(4)}, "last.pt")
        with pytest.raises(Exception):
            run.save_checkpoint({"epoch": 2, "w": torch.zeros(4), "bad": lambda: None}, "last.pt")
    finally:
        run.close()
    assert torch.load(good, weights_only=True)["epoch"] == 1
    assert [p.name for p in good.parent.iterdir()] == ["last.pt"]


def test_curves_png_is_a_png(tmp_path):
    run = RunDir(tmp_path / "run")
    try:
        path = run.write_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5, "lr": 0.1},
                                 {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.7, "lr": 0.05}])
    finally:
        run.close()
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoints", "curves.png", "train.log"]
