"""Where a run executes: the device, and what differs when several processes train one model.

The loop and the stepper talk to a :class:`Placement` and never test "am I
distributed?". :class:`SingleProcess` is one process, where every method is a no-op or an
identity; :class:`Distributed` is one of several processes that ``torchrun`` started
(DDP: wrap in ``DistributedDataParallel``, shard the batches, ``all_reduce`` the loss
sums, agree on skips and stops, rank 0 writes the outputs). :func:`placement_for` picks
it when torchrun's environment (``WORLD_SIZE`` > 1) is there.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

from torchtk.core.errors import UserInputError
from torchtk.core.outputs import RunDir


class Placement(Protocol):
    """What the engine asks of the process layout. Every method is cheap when unused."""

    device: Any
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's outputs (rank 0)."""

    def open_run_dir(self, given: Path | None, create: Callable[[], Path]) -> RunDir:
        """The run directory: ``given`` (a resumed run's), else the one ``create`` makes."""

    def wrap(self, model: Any) -> Any:
        """The model to train (``DistributedDataParallel(model)`` under DDP)."""

    def shard(self, batches: Any) -> Any:
        """This process's share of the training batches (the same count on every process)."""

    def shard_eval(self, batches: Any) -> Any:
        """This process's share of a validation pass's batches (``None`` stays ``None``)."""

    def check(self, parts: Any) -> None:
        """Refuse, as an input error, what this layout cannot run (before anything trains)."""

    def no_sync(self, model: Any) -> ContextManager[Any]:
        """Skip the gradient all-reduce for a backward off the accumulation boundary."""

    def sync_next(self, model: Any, sync: bool) -> None:
        """Whether the next forward and backward all-reduce the gradients (DDP decides that
        in the forward, so the stepper says it after each backward while it accumulates)."""

    def all_reduce(self, tensor: Any) -> Any:
        """Sum ``tensor`` over processes, in place; returns it."""

    def agree(self, flag: bool) -> bool:
        """True on every process when it is true on any (skip a step, stop the run)."""

    def barrier(self) -> None:
        """Wait for every process (after rank 0 wrote a checkpoint)."""

    def interrupted(self, exc: BaseException) -> bool:
        """Whether ``exc`` ends the run as an interruption (a signal, here or elsewhere)."""


class SingleProcess:
    """One process on one device: every collective is the identity."""

    rank = 0
    world_size = 1

    def __init__(self, device: Any) -> None:
        self.device = device

    @property
    def is_main(self) -> bool:
        return True

    def open_run_dir(self, given: Path | None, create: Callable[[], Path]) -> RunDir:
        return RunDir(given or create())

    def wrap(self, model: Any) -> Any:
        return model

    def shard(self, batches: Any) -> Any:
        return batches

    def shard_eval(self, batches: Any) -> Any:
        return batches

    def check(self, parts: Any) -> None:
        return None

    def no_sync(self, model: Any) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def sync_next(self, model: Any, sync: bool) -> None:
        return None

    def all_reduce(self, tensor: Any) -> Any:
        return tensor

    def agree(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        return None

    def interrupted(self, exc: BaseException) -> bool:
        return _signalled(exc)


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


def placement_for(device_name: str, *, sync_batchnorm: bool = False, single: str | None = None) -> Placement:
    """The placement a run gets: :class:`Distributed` when torchrun started this process
    as one of several, else one process. ``single`` names a command that works in one
    process only (``tk lr-find``): under torchrun it refuses with an input error."""
    if torchrun_world() is None:
        return SingleProcess(resolve_device(device_name))
    if single is not None:
        refuse_under_torchrun(single)
    return Distributed(device_name, sync_batchnorm)


# -- several processes under torchrun -----------------------------------------------------------


def torchrun_world() -> tuple[int, int, int] | None:
    """``(rank, local_rank, world_size)`` when ``torchrun`` started this process as one of
    several (its ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``), else ``None``. Read from the
    environment only: no torch import (``tk list`` stays light)."""
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1 or "LOCAL_RANK" not in env:
            return None
        return int(env["RANK"]), int(env["LOCAL_RANK"]), world
    except (KeyError, ValueError):
        raise UserInputError("torchrun's environment is incomplete: RANK, LOCAL_RANK and WORLD_SIZE must be "
                             "whole numbers") from None


def is_main_process() -> bool:
    """Whether this process prints and writes: rank 0 of a torchrun launch, or the only one."""
    world = torchrun_world()
    return world is None or world[0] == 0


def refuse_under_torchrun(what: str) -> None:
    """``what`` (a command that works in one process) refuses to run as several copies."""
    world = torchrun_world()
    if world is not None:
        raise UserInputError(f"{what} runs in one process; under torchrun (WORLD_SIZE={world[2]}) each of the "
                             f"{world[2]} processes would do the same work: run it without torchrun")


def rank_device(name: str, local_rank: int) -> Any:
    """The device of the process ``local_rank`` on its node for ``trainer.device``: one GPU
    per process (``cuda:<LOCAL_RANK>``) or the CPU; what cannot be shared out is an input error."""
    import torch

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "mps":
        raise UserInputError("trainer.device='mps': torch.distributed has no backend for MPS; under torchrun use "
                             "\"cpu\" (gloo), or run without torchrun")
    if name.startswith("cuda:") and local_world != 1:
        raise UserInputError(f"trainer.device={name!r} names one GPU, but torchrun started {local_world or 'several'}"
                             f" processes on this node; use \"cuda\" or \"auto\" (each process takes "
                             f"cuda:<LOCAL_RANK>)")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = resolve_device(name)
    if device.type == "cuda" and local_rank >= torch.cuda.device_count():
        raise UserInputError(f"torchrun started process {local_rank} on this node, but there are only "
                             f"{torch.cuda.device_count()} CUDA devices: one GPU per process (--nproc_per_node)")
    return device


class Distributed:
    """One of ``world_size`` processes training one model with DDP (gloo on CPU, NCCL on
    CUDA), each on its own device. Rank 0 writes the run directory and prints; every
    process reads the checkpoints (so a multi-node ``--resume`` needs the run directory
    on a shared file system)."""

    def __init__(self, device_name: str, sync_batchnorm: bool = False) -> None:
        import torch.distributed as dist

        self.rank, local_rank, self.world_size = torchrun_world() or (0, 0, 1)
        self.device = rank_device(device_name, local_rank)
        self.sync_batchnorm, self.wrapped = sync_batchnorm, None
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if not dist.is_available():
            raise UserInputError("torchrun started several processes, but this torch has no torch.distributed")
        if sync_batchnorm and self.device.type != "cuda":
            raise UserInputError(f"trainer.sync_batchnorm: SyncBatchNorm needs CUDA devices (NCCL); this run is "
                                 f"on {self.device.type}: set it to false")
        if not dist.is_initialized():
            if not dist.is_backend_available(backend):
                raise UserInputError(f"trainer.device={device_name!r} under torchrun needs the {backend} backend, "
                                     f"which this torch build lacks")
            if self.device.type == "cuda":
                import torch

                torch.cuda.set_device(self.device)
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size,
                                    device_id=self.device if self.device.type == "cuda" else None)
            atexit.register(_close_process_group)
        elif dist.get_world_size() != self.world_size:
            raise UserInputError(f"a process group of {dist.get_world_size()} processes exists, but torchrun's "
                                 f"WORLD_SIZE is {self.world_size}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def open_run_dir(self, given: Path | None, create: Callable[[], Path]) -> RunDir:
        """Rank 0 creates (or opens) the run directory and tells the others its path."""
        import torch.distributed as dist

        shared = [str(given or create()) if self.is_main else None]
        dist.broadcast_object_list(shared, src=0)
        path = Path(shared[0])
        return RunDir(path) if self.is_main else ReadOnlyRunDir(path)

    def wrap(self, model: Any) -> Any:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self.sync_batchnorm:
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module
        if not any(p.requires_grad for p in model.parameters()):
            raise UserInputError("DDP needs trainable parameters; every parameter of the model is frozen")
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.wrapped = DistributedDataParallel(model, device_ids=ids)
        return self.wrapped

    def shard(self, batches: Any) -> Any:
        return shard_for_training(batches, self.rank, self.world_size)

    def shard_eval(self, batches: Any) -> Any:
        return shard_for_evaluation(batches, self.rank, self.world_size)

    def check(self, parts: Any) -> None:
        refuse_closure(parts)
        if self.sync_batchnorm:  # the converted layers keep their mode: those a freeze policy put in eval stay there
            parts.frozen_eval = [m for m in parts.model.modules() if not m.training]

    def no_sync(self, model: Any) -> ContextManager[Any]:
        # DDP decides at the forward whether a backward all-reduces: sync_next set that already
        return contextlib.nullcontext()

    def sync_next(self, model: Any, sync: bool) -> None:
        if self.wrapped is not None:
            self.wrapped.require_backward_grad_sync = sync

    def all_reduce(self, tensor: Any) -> Any:
        import torch.distributed as dist

        dist.all_reduce(tensor)
        return tensor

    def agree(self, flag: bool) -> bool:
        import torch
        import torch.distributed as dist

        vote = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        return bool(vote.item())

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier(device_ids=[self.device.index]) if self.device.type == "cuda" else dist.barrier()

    def interrupted(self, exc: BaseException) -> bool:
        """A signal here (told to the others through the process group's store), or on
        another process, whose stop failed this one's collective."""
        store = _store()
        if _signalled(exc):
            with contextlib.suppress(Exception):
                store.set(STOP_KEY, str(self.rank))
            return True
        if store is None:
            return False
        try:
            return store.check([STOP_KEY])
        except Exception:  # the store went with the processes: no word of an interrupt
            return False


STOP_KEY = "torchtk/interrupted"


def refuse_closure(parts: Any) -> None:
    """An optimizer that re-evaluates the loss inside its step cannot be shared out."""
    if parts.needs_closure:
        raise UserInputError("optimizer: an optimizer that re-evaluates the loss inside its step (L-BFGS) "
                             "cannot run under DDP: each process would take its own line search on its own "
                             "shard, and their collectives would not match; run it in one process")


def _signalled(exc: BaseException) -> bool:
    from torchtk.core.errors import interrupted

    return isinstance(exc, KeyboardInterrupt) or interrupted()


def _store() -> Any:
    """The default process group's key-value store (torchrun's agent hosts it), if any."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:
        return None


def _close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


class ReadOnlyRunDir(RunDir):
    """The run directory as a process other than rank 0 sees it: it knows the paths (to
    read checkpoints) and writes nothing."""

    def __init__(self, path: Path) -> None:
        self.path, self.checkpoints = path, path / "checkpoints"

    def log(self, message: str) -> None:
        return None

    def close(self) -> None:
        return None

    def write_spec(self, spec_json: dict[str, Any]) -> None:
        return None

    def write_history(self, history: list[dict[str, float]]) -> None:
        return None

    def write_metrics(self, summary: dict[str, Any]) -> None:
        return None

    def save_checkpoint(self, payload: dict[str, Any], name: str) -> Path:
        return self.checkpoints / name

    def write_curves(self, *args: Any, **kwargs: Any) -> Path | None:
        return None


# -- sharding the batches ------------------------------------------------------------------------


def shard_for_training(batches: Any, rank: int, world: int) -> Any:
    """Process ``rank``'s share of the training batches, the same number of batches on every
    process (each backward all-reduces). In memory: every ``world_size * batch_size`` batch of
    the one-process order, dealt out sample by sample, a last short one padded with samples
    from the start. A DataLoader: a ``DistributedSampler`` (padded the same way), shuffled
    per pass from the run's generator."""
    from torchtk.core.data import TensorBatches

    if isinstance(batches, TensorBatches):
        return TensorBatches(batches.tensors, batches.batch_size, batches.shuffle, batches.generator,
                             batches.limit, part=(rank, world))
    dataset = _map_style(batches)
    shuffle = _shuffles(batches)
    sampler = run_sampler()(dataset, batches.generator, num_replicas=world, rank=rank, shuffle=shuffle,
                         drop_last=False)
    return _loader_like(batches, dataset, sampler)


def shard_for_evaluation(batches: Any, rank: int, world: int) -> Any:
    """Process ``rank``'s samples of a validation pass: every ``world_size``-th one, nothing
    padded, so the reduced loss and metrics are those of one process over all samples."""
    from torchtk.core.data import TensorBatches

    if batches is None:
        return None
    size = batches.size if isinstance(batches, TensorBatches) else len(_map_style(batches))
    if size < world:
        raise UserInputError(f"data: the validation split has {size} samples, fewer than the {world} processes "
                             f"torchrun started; every process needs at least one")
    if isinstance(batches, TensorBatches):
        return TensorBatches([t[rank::world] for t in batches.tensors], batches.batch_size, False,
                             batches.generator, batches.limit)
    from torch.utils.data import Subset

    dataset = Subset(batches.dataset, range(rank, size, world))
    return _loader_like(batches, dataset, None)


def _map_style(loader: Any) -> Any:
    from torch.utils.data import IterableDataset

    if isinstance(loader.dataset, IterableDataset):
        raise UserInputError("data: an iterable dataset cannot be sharded across processes by torchtk; use a "
                             "map-style dataset (len and indexing) under torchrun")
    return loader.dataset


def _shuffles(loader: Any) -> bool:
    from torch.utils.data import RandomSampler

    return isinstance(loader.sampler, RandomSampler)


def _loader_like(loader: Any, dataset: Any, sampler: Any) -> Any:
    """A DataLoader with ``loader``'s options over ``dataset`` (drawing from ``sampler``)."""
    from torch.utils.data import DataLoader

    workers = loader.num_workers
    options = {"prefetch_factor": loader.prefetch_factor, "persistent_workers": loader.persistent_workers} \
        if workers else {}
    return DataLoader(dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn, generator=loader.generator, **options)


@functools.cache
def run_sampler() -> Any:
    """The :class:`RunSampler` class (a ``DistributedSampler``; built on first use, so this
    module imports no torch)."""
    from torch.utils.data import DistributedSampler

    class RunSampler(DistributedSampler):
        """``DistributedSampler`` whose ``set_epoch`` value is drawn from the run's generator at
        each pass: every process draws the same value, each epoch shuffles anew, and a resumed
        run (the generator is in the checkpoint) shuffles as the uninterrupted one did."""

        def __init__(self, dataset: Any, generator: Any, **options: Any) -> None:
            import torch

            super().__init__(dataset, seed=generator.initial_seed() if generator is not None else 0, **options)
            self.draws = generator if generator is not None else torch.Generator().manual_seed(0)

        def __iter__(self) -> Any:
            import torch

            if self.shuffle:
                self.set_epoch(int(torch.randint(2**62, (), generator=self.draws)))
            return super().__iter__()

    return RunSampler
