"""The training step never reads the device from the host: metrics and callbacks keep
their state on the device and read it once, in ``compute`` / at the epoch's end.

A host read (``item``, ``tolist``, ``bool``, ``float``, ``int``, ``cpu``, ``numpy``) is
a device sync on an accelerator. They are counted by patching ``torch.Tensor`` during a
whole run; a run with four times as many steps per epoch must read exactly as often,
so no read happens per step (nor per validation batch). Timings are not tested here.
"""

from __future__ import annotations

import collections
import copy
import sys

import pytest
import torch

import torchtk

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")
# torchmetrics checks whether predictions are probabilities with a host read on CPU tensors
# only (nothing to sync with there); on an accelerator it uses torch.where, no read
CPU_ONLY = {("__bool__", "torchmetrics.utilities.compute.normalize_logits_if_needed")}


class HostReads:
    """Counts host reads of tensors, by reading method and calling function."""

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.originals = {name: getattr(torch.Tensor, name) for name in READS}

    def __enter__(self) -> "HostReads":
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, self._counting(name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, original)

    def _counting(self, name, original):
        calls = self.calls

        def read(tensor, *args, **kwargs):
            caller = sys._getframe(1)
            where = (name, f"{caller.f_globals.get('__name__')}.{caller.f_code.co_name}")
            if where not in CPU_ONLY:
                calls[where] += 1
            return original(tensor, *args, **kwargs)

        return read

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def counted_run(small_spec, batch_size: int) -> tuple[HostReads, torchtk.RunResult]:
    spec = copy.deepcopy(small_spec)
    spec["data"]["batch_size"] = batch_size
    spec["loss"] = "bce_with_logits"
    # SGD: Adam keeps its step count in a CPU tensor and reads it with .item() per step (not a device read)
    spec["optimizer"] = {"name": "sgd", "params": {"lr": 0.05, "momentum": 0.9}}
    spec["metrics"] = [{"name": "accuracy", "train": True}, {"name": "f1", "train": True},
                       {"name": "precision"}, {"name": "auroc"}]
    spec["callbacks"] = [{"name": "grad_clip", "params": {"max_norm": 5}}]
    spec["trainer"].update(epochs=2, log_every_n_steps=10_000, progress=False)
    with HostReads() as reads:
        result = torchtk.train(spec, progress=False)
    return reads, result


def test_no_host_reads_per_step_with_metrics_and_callbacks(small_spec):
    few, few_result = counted_run(small_spec, batch_size=200)  # 3 train batches, 1 val batch per epoch
    many, many_result = counted_run(small_spec, batch_size=50)  # 12 train batches, 4 val batches per epoch
    assert many_result.history[-1]["val_f1"] >= 0 and "train_accuracy" in many_result.history[-1]
    extra = many.calls - few.calls
    assert many.total == few.total, f"host reads that grow with the steps: {dict(extra)}"
    assert few.total > 0  # the counting works: compute() and the epoch's loss are read


def test_the_live_loss_is_read_once_per_log_interval(small_spec):
    """``trainer.log_every_n_steps``: the one read on the step path, at its interval."""
    spec = copy.deepcopy(small_spec)
    spec["trainer"].update(epochs=1, progress=False)
    counts = []
    for every in (10_000, 3):
        spec["trainer"]["log_every_n_steps"] = every
        with HostReads() as reads:
            torchtk.train(copy.deepcopy(spec), progress=False)
        counts.append(reads.calls[("item", "torchtk.core.loop.train_epoch")])
    assert counts == [0, 4]  # 12 batches: the 3rd, 6th, 9th and 12th


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for torch.cuda.set_sync_debug_mode")
def test_no_synchronising_cuda_call_during_training(small_spec):
    spec = copy.deepcopy(small_spec)
    spec["trainer"].update(device="cuda", epochs=1, log_every_n_steps=10_000, progress=False)
    spec["optimizer"] = {"name": "sgd", "params": {"lr": 0.05}}
    spec["metrics"] = [{"name": "accuracy", "train": True}]
    from torchtk.core.stepper import Stepper

    original = Stepper.update

    def strict_update(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    Stepper.update = strict_update  # the optimizer update, its hooks and schedulers: no synchronising call
    try:
        torchtk.train(spec, progress=False)
    finally:
        Stepper.update = original
