"""What a kill can leave behind, repaired by ``--resume``: a ``best.pt`` older than the
best epoch the state names (a kill between writing ``last.pt`` and ``best.pt``), stale
``metrics.json`` and ``history.csv``, and temporary files of writes that never finished."""

from __future__ import annotations

import json

import pytest
import torch

import torchtk

pytestmark = pytest.mark.faults


def simulate_a_kill_before_best_pt(run_dir):
    """What the run directory looks like when epoch 3 was killed right after its last.pt:
    best.pt, metrics.json and history.csv are still those of epoch 2."""
    best = run_dir / "checkpoints" / "best.pt"
    older = torch.load(best, weights_only=True)
    older["epoch"] = 2
    older["model"] = {key: value + 1 if value.is_floating_point() else value for key, value in older["model"].items()}
    torch.save(older, best)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = (run_dir / "history.csv").read_text().splitlines(keepends=True)
    metrics.update(epochs_run=2, last=metrics["best"] | {"epoch": 2}, best=metrics["best"] | {"epoch": 2})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "history.csv").write_text("".join(history[:3]))


@pytest.mark.parametrize("ema", [False, True], ids=["plain", "ema_for_validation"])
def test_a_best_pt_older_than_the_best_epoch_is_written_again_on_resume(small_spec, ema):
    """Found: after such a kill and --resume, metrics.json named epoch 3 as the best while
    best.pt held an older model, for good. With ema's for_validation best.pt holds the
    averaged weights, not last.pt's: it is written from the restored run after on_fit_start."""
    if ema:
        small_spec["callbacks"] = [{"name": "ema", "params": {"decay": 0.9, "for_validation": True}}]
    result = torchtk.train(small_spec)
    run_dir = result.run_dir
    assert result.best["epoch"] == 3  # the precondition: the last epoch is the best
    expected = {name: (run_dir / name).read_bytes() for name in ("metrics.json", "history.csv")}
    good = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    if ema:  # the weights best.pt holds are not the training weights
        last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        assert not all(torch.equal(good["model"][k], last["model"][k]) for k in last["model"])
    simulate_a_kill_before_best_pt(run_dir)
    torchtk.train(small_spec, resume=run_dir)
    repaired = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert repaired["epoch"] == 3
    assert all(torch.equal(repaired["model"][k], good["model"][k]) for k in good["model"])
    assert all((run_dir / name).read_bytes() == text for name, text in expected.items())
    assert "resume: best.pt did not hold epoch 3, the best one" in (run_dir / "train.log").read_text()


def test_temporary_files_of_unfinished_writes_are_removed_on_resume_and_only_those(small_spec):
    small_spec["trainer"]["epochs"] = 2
    run_dir = torchtk.train(small_spec).run_dir
    ours = [run_dir / "checkpoints" / ".last.pt.0123456789ab.tmp", run_dir / "checkpoints" / ".best.pt.a1b2c3d4e5f6.tmp",
            run_dir / ".history.csv.abcdef012345.tmp", run_dir / ".curves.png.00000000ffff.tmp"]
    theirs = [run_dir / "notes.tmp", run_dir / ".my.cache.tmp", run_dir / "checkpoints" / ".last.pt.xyz.tmp",
              run_dir / "checkpoints" / "last.pt.0123456789ab.tmp"]
    for path in ours + theirs:
        path.write_bytes(b"half a checkpoint")
    small_spec["trainer"]["epochs"] = 3
    torchtk.train(small_spec, resume=run_dir)
    assert [path.exists() for path in ours] == [False] * len(ours)
    assert [path.exists() for path in theirs] == [True] * len(theirs)
