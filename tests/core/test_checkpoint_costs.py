"""What a run's per-epoch writes cost, and that the cheaper writes keep their guarantees:
one serialisation for ``last.pt`` and ``best.pt``, two fsyncs per epoch, and
``trainer.checkpoint_every`` with a resume that ends bit-identical."""

from __future__ import annotations

import os

import pytest
import torch

import torchtk
from torchtk.core import engine
from torchtk.core.errors import RunInterrupted
from torchtk.core.outputs import RunDir, atomic_writer


def test_copies_get_the_same_bytes_from_one_write_and_are_separate_files(tmp_path):
    with atomic_writer(tmp_path / "last.pt", copies=(tmp_path / "best.pt",)) as handle:
        handle.write(b"payload")
    assert (tmp_path / "last.pt").read_bytes() == (tmp_path / "best.pt").read_bytes() == b"payload"
    assert os.stat(tmp_path / "last.pt").st_ino != os.stat(tmp_path / "best.pt").st_ino
    (tmp_path / "best.pt").write_bytes(b"changed in place")  # a user's torch.save over best.pt
    assert (tmp_path / "last.pt").read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


def test_a_failed_write_leaves_every_path_as_it_was_and_no_temporary(tmp_path):
    for name in ("last.pt", "best.pt"):
        (tmp_path / name).write_bytes(b"old " + name.encode())
    with pytest.raises(RuntimeError):
        with atomic_writer(tmp_path / "last.pt", copies=(tmp_path / "best.pt",)) as handle:
            handle.write(b"half")
            raise RuntimeError("torch.save failed")
    assert (tmp_path / "last.pt").read_bytes() == b"old last.pt"
    assert (tmp_path / "best.pt").read_bytes() == b"old best.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_non_durable_write_is_atomic_and_skips_fsync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    run = RunDir(tmp_path / "run")
    try:
        run.write_history([{"epoch": 1, "train_loss": 0.5}], durable=False)
        run.write_metrics({"best": {}}, durable=False)
        assert calls == []
        run.sync_summary()  # history.csv, metrics.json, then their directory once
        assert len(calls) == 3
    finally:
        run.close()
    assert (tmp_path / "run" / "history.csv").read_text() == "epoch,train_loss\n1,0.5\n"


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_one_torch_save_per_epoch_and_two_or_three_fsyncs_per_epoch(small_spec, monkeypatch):
    """Each epoch: one torch.save, the checkpoint's fsync and its directory's; an epoch that
    improved also fsyncs its copy, best.pt. history.csv and metrics.json: once, at the end."""
    saves = _count(monkeypatch, torch, "save")
    fsyncs = _count(monkeypatch, os, "fsync")
    counts, improved = {}, {}
    for epochs in (2, 4):
        small_spec["trainer"]["epochs"] = epochs
        saves.clear(), fsyncs.clear()
        result = torchtk.train(small_spec)
        losses = [row["val_loss"] for row in result.history]
        improved[epochs] = sum(1 for i, loss in enumerate(losses) if loss < min(losses[:i], default=float("inf")))
        assert len(saves) == epochs  # epochs that wrote last.pt and best.pt too
        counts[epochs] = len(fsyncs)
    assert improved[4] >= 2
    assert counts[4] - counts[2] == 2 * 2 + improved[4] - improved[2]
    best = torch.load(result.best_checkpoint, weights_only=True)
    assert best["epoch"] == result.best["epoch"]
    assert (result.best_checkpoint.read_bytes() == result.last_checkpoint.read_bytes()) == (
        result.best["epoch"] == 4)


def test_with_validated_weights_best_pt_is_its_own_serialisation(small_spec, monkeypatch):
    small_spec["callbacks"] = [{"name": "ema", "params": {"decay": 0.9, "for_validation": True}}]
    small_spec["trainer"]["epochs"] = 1
    saves = _count(monkeypatch, torch, "save")
    result = torchtk.train(small_spec)
    assert len(saves) == 2  # the first epoch always improves: last.pt (training weights), best.pt (the average)
    last, best = (torch.load(p, weights_only=True) for p in (result.last_checkpoint, result.best_checkpoint))
    assert not all(torch.equal(last["model"][k], best["model"][k]) for k in last["model"])


def test_checkpoint_every_writes_last_pt_every_n_epochs_and_after_the_last(small_spec, monkeypatch):
    small_spec["trainer"].update(epochs=5, checkpoint_every=2, monitor="train_loss")
    written = []
    real = RunDir.save_checkpoint
    monkeypatch.setattr(RunDir, "save_checkpoint",
                        lambda self, payload, name, *copies: written.append((payload["epoch"], name, *copies))
                        or real(self, payload, name, *copies))
    torchtk.train(small_spec)
    assert [epoch for epoch, *names in written if "last.pt" in names] == [2, 4, 5]


def test_checkpoint_every_rejects_zero(small_spec):
    from torchtk.core.errors import UserInputError

    small_spec["trainer"]["checkpoint_every"] = 0
    with pytest.raises(UserInputError, match="checkpoint_every"):
        torchtk.train(small_spec)


def test_a_run_killed_between_checkpoints_resumes_bit_identical(small_spec, monkeypatch):
    """With checkpoint_every 2 a kill in epoch 4 loses epochs 3 and 4 (last.pt holds epoch 2);
    the resumed run retrains them and ends with the weights and history of a run never
    interrupted."""
    small_spec["trainer"].update(epochs=5, checkpoint_every=2)
    whole = torchtk.train(small_spec)
    real = engine.Run.run_epoch

    def killed_in_epoch_4(self, epoch):
        if epoch == 4:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(engine.Run, "run_epoch", killed_in_epoch_4)
    with pytest.raises(RunInterrupted):
        torchtk.train(small_spec)
    monkeypatch.setattr(engine.Run, "run_epoch", real)
    run_dir = max((p for p in whole.run_dir.parent.iterdir() if p != whole.run_dir), key=lambda p: p.name)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = torchtk.train(small_spec, resume=run_dir)
    assert resumed.history == whole.history
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                  whole.model.state_dict().values()))
    assert (run_dir / "history.csv").read_text() == (whole.run_dir / "history.csv").read_text()
