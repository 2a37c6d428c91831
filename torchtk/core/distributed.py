"""Where a run executes: the device, and what differs when several processes train one model.

The loop and the stepper talk to a :class:`Placement` and never test "am I
distributed?". :class:`SingleProcess` is the only implementation today and every method
is a no-op or an identity; DDP under ``torchrun`` becomes one more implementation
(wrap in ``DistributedDataParallel``, shard with a ``DistributedSampler``,
``all_reduce`` the loss sums and metric states, rank 0 writes the outputs), not branches
through the loop.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Protocol

from torchtk.core.errors import UserInputError


class Placement(Protocol):
    """What the engine asks of the process layout. Every method is cheap when unused."""

    device: Any
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's outputs (rank 0)."""

    def wrap(self, model: Any) -> Any:
        """The model to train (``DistributedDataParallel(model)`` under DDP)."""

    def shard(self, batches: Any) -> Any:
        """This process's share of a batch iterable."""

    def no_sync(self, model: Any) -> ContextManager[Any]:
        """Skip the gradient all-reduce for a backward off the accumulation boundary."""

    def all_reduce(self, tensor: Any) -> Any:
        """Sum ``tensor`` over processes, in place; returns it."""

    def agree(self, flag: bool) -> bool:
        """True on every process when it is true on any (skip a step, stop the run)."""

    def barrier(self) -> None:
        """Wait for every process (after rank 0 wrote a checkpoint)."""


class SingleProcess:
    """One process on one device: every collective is the identity."""

    rank = 0
    world_size = 1

    def __init__(self, device: Any) -> None:
        self.device = device

    @property
    def is_main(self) -> bool:
        return True

    def wrap(self, model: Any) -> Any:
        return model

    def shard(self, batches: Any) -> Any:
        return batches

    def no_sync(self, model: Any) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def all_reduce(self, tensor: Any) -> Any:
        return tensor

    def agree(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        return None


def resolve_device(name: str) -> Any:
    """``trainer.device`` as a ``torch.device``; an unavailable device is an input error."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_available = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"trainer.device={name!r}, but CUDA is not available here; use \"auto\" or \"cpu\"")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserInputError(f"trainer.device={name!r}, but there are {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not mps_available:
        raise UserInputError(f"trainer.device={name!r}, but MPS is not available here; use \"auto\" or \"cpu\"")
    return device


def placement_for(device_name: str) -> SingleProcess:
    """The placement a run gets: one process (DDP under torchrun is not implemented yet)."""
    return SingleProcess(resolve_device(device_name))
