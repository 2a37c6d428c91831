"""The placement seam: the loop, the stepper and the checkpoint service ask a Placement,
so DDP can be one more implementation. Here a recording placement stands in for it."""

from __future__ import annotations

import contextlib

import pytest
import torch

import torchtk
from torchtk.core.distributed import SingleProcess, resolve_device
from torchtk.core.engine import Run
from torchtk.core.errors import UserInputError
from torchtk.core.loop import accumulator_dtype
from torchtk.core.progress import Reporter
from torchtk.core.spec import load_spec


class Recording(SingleProcess):
    """One process, counting every call the engine makes to its placement."""

    def __init__(self, device, main=True):
        super().__init__(device)
        self.calls, self.main = [], main

    @property
    def is_main(self):
        return self.main

    def wrap(self, model):
        self.calls.append("wrap")
        return model

    def shard(self, batches):
        self.calls.append("shard")
        return batches

    def no_sync(self, model):
        self.calls.append("no_sync")
        return contextlib.nullcontext()

    def all_reduce(self, tensor):
        self.calls.append("all_reduce")
        return tensor

    def agree(self, flag):
        self.calls.append("agree")
        return flag

    def barrier(self):
        self.calls.append("barrier")


def test_the_engine_goes_through_the_placement(small_spec, tmp_path):
    small_spec["trainer"].update(epochs=1, accumulate_grad_batches=2)
    placement = Recording(torch.device("cpu"))
    run = Run(load_spec(small_spec), torchtk.registry, Reporter(), tmp_path / "run", placement=placement)
    run.fit()
    assert placement.calls[:2] == ["shard", "wrap"]
    assert placement.calls.count("no_sync") == 6  # 12 batches, windows of 2: every first batch skips the sync
    # grad_clip implements on_step: the skip is agreed per update (6), and the stop decision once per epoch
    assert placement.calls.count("agree") == 7
    assert placement.calls.count("barrier") == 1  # after the epoch's checkpoints
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_only_the_main_process_writes_outputs(small_spec, tmp_path):
    small_spec["trainer"]["epochs"] = 1
    placement = Recording(torch.device("cpu"), main=False)
    run = Run(load_spec(small_spec), torchtk.registry, Reporter(), tmp_path / "run", placement=placement)
    result = run.fit()
    assert len(result.history) == 1
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "run" / "history.csv").exists() and not (tmp_path / "run" / "curves.png").exists()


def test_single_process_is_the_identity():
    placement = SingleProcess(torch.device("cpu"))
    tensor = torch.ones(3)
    assert placement.all_reduce(tensor) is tensor and placement.agree(True) and not placement.agree(False)
    assert placement.is_main and placement.world_size == 1 and placement.rank == 0
    with placement.no_sync(None):
        pass


def test_loss_sums_use_float32_where_float64_does_not_exist():
    assert accumulator_dtype(torch.device("cpu"), training=False) == torch.float64
    assert accumulator_dtype(torch.device("cpu"), training=True) == torch.float32
    assert accumulator_dtype(torch.device("mps"), training=False) == torch.float32


def test_an_unavailable_device_is_an_input_error():
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
