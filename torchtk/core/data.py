"""Getting a run's data to the model: a reproducible split, and batches.

A ``TensorDataset`` with no workers is moved to the device once and batched by index
(:class:`TensorBatches`, no per-sample Python work); anything else goes through a
``DataLoader``. Batches may hold a tensor or a tuple of tensors (multi-input losses).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from torchtk.core.errors import UserInputError
from torchtk.core.spec import RunSpec


class TensorBatches:
    """Batches of in-memory tensors by index, with no per-sample Python work.

    Used instead of a DataLoader when the dataset is a ``TensorDataset`` and no workers
    are asked for; the order (a ``randperm`` from the run's generator) is reproducible.
    """

    def __init__(self, tensors: list[Any], batch_size: int, shuffle: bool, generator: Any,
                 limit: int | None = None, part: tuple[int, int] = (0, 1)) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.size = len(tensors[0])
        self.limit = limit  # batches per pass (trainer.limit_*_batches); None: all
        self.part = part  # (rank, world_size): this process's samples of each world_size-times-larger batch

    def __len__(self) -> int:
        batches = math.ceil(self.size / (self.batch_size * self.part[1]))
        return batches if self.limit is None else min(self.limit, batches)

    def __iter__(self) -> Iterator[list[Any]]:
        import torch

        if self.part[1] > 1:
            yield from self._shard()
            return
        stop = min(self.size, len(self) * self.batch_size)
        if self.shuffle:
            order = torch.randperm(self.size, generator=self.generator).to(self.tensors[0].device)
            for start in range(0, stop, self.batch_size):
                index = order[start:start + self.batch_size]
                yield [t[index] for t in self.tensors]
        else:
            for start in range(0, stop, self.batch_size):
                yield [t[start:start + self.batch_size] for t in self.tensors]

    def _shard(self) -> Iterator[list[Any]]:
        """Every batch of ``world_size * batch_size`` samples of the one-process order, dealt
        out sample by sample (rank r takes positions r, r + world_size, ...); a last batch
        that does not divide evenly is padded with samples from the start of the order, as
        ``DistributedSampler`` pads, so every process has a batch of the same size."""
        import torch

        rank, world = self.part
        step = self.batch_size * world
        stop = min(self.size, len(self) * step)
        device = self.tensors[0].device
        order = torch.randperm(self.size, generator=self.generator).to(device) if self.shuffle \
            else torch.arange(self.size, device=device)
        for start in range(0, stop, step):
            index = order[start:min(start + step, stop)]
            short = -len(index) % world
            if short:
                index = torch.cat([index, order.repeat(math.ceil(short / len(order)))[:short]])
            index = index[rank::world]
            yield [t[index] for t in self.tensors]


class LimitedBatches:
    """The first ``count`` batches of a DataLoader per pass (``trainer.limit_*_batches``);
    other attributes (``dataset``, ``collate_fn``) are the loader's."""

    def __init__(self, loader: Any, count: int) -> None:
        self.loader, self.count = loader, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        import itertools

        return itertools.islice(iter(self.loader), self.count)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


def batch_count(limit: int | float, available: int, where: str) -> int:
    """How many of ``available`` batches a limit keeps: an int is a number (all, at most),
    a float a fraction, rounded down as Lightning does; a fraction that keeps no batch is
    an input error naming ``where``."""
    if isinstance(limit, float):
        count = int(available * limit)
        if count == 0 and available:
            raise UserInputError(f"{where}: {limit} of {available} batches is no batch; give at least "
                                 f"{1 / available:.4g}, or a number of batches")
        return count
    return min(limit, available)


def batch_limits(trainer: Any) -> tuple[tuple[str, int | float], tuple[str, int | float]]:
    """``((where, limit), (where, limit))`` for the train and val batches of a run:
    ``fast_dev_run``'s N for both; none while ``overfit_batches`` is on (it chose the
    batches already); else ``limit_train_batches`` and ``limit_val_batches``."""
    if trainer.fast_dev_run:
        count = 1 if trainer.fast_dev_run is True else trainer.fast_dev_run
        return ("trainer.fast_dev_run", count), ("trainer.fast_dev_run", count)
    if trainer.overfit_batches:
        return ("trainer.overfit_batches", 1.0), ("trainer.overfit_batches", 1.0)
    return ("trainer.limit_train_batches", trainer.limit_train_batches), \
        ("trainer.limit_val_batches", trainer.limit_val_batches)


def limit_batches(batches: Any, limit: int | float, where: str) -> Any:
    """``batches`` cut to ``limit`` per pass (see :func:`batch_count`); the same object when nothing is cut."""
    if batches is None:
        return None
    count = batch_count(limit, len(batches), where)
    if count >= len(batches):
        return batches
    if isinstance(batches, TensorBatches):
        return TensorBatches(batches.tensors, batches.batch_size, batches.shuffle, batches.generator, count,
                             batches.part)
    return LimitedBatches(batches, count)


def overfit_subset(train: Any, spec: RunSpec) -> Any:
    """The samples of the first ``trainer.overfit_batches`` training batches (unshuffled)."""
    from torch.utils.data import Subset

    size, per_batch = len(train), spec.data.batch_size
    count = batch_count(spec.trainer.overfit_batches, math.ceil(size / per_batch), "trainer.overfit_batches")
    keep = min(size, count * per_batch)
    if isinstance(train, Subset):
        return Subset(train.dataset, list(train.indices[:keep]))
    return Subset(train, range(keep))


def to_device(batch: Any, device: Any, dtype: Any = None) -> Any:
    """A tensor, or a tuple/list of them (multi-input losses such as triplet or CTC), on
    ``device``; floating-point tensors also cast to ``dtype`` unless it is ``None``
    (the precision's ``input_dtype``; integer class labels keep theirs)."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device, dtype) for item in batch)
    if not hasattr(batch, "to"):
        return batch
    if dtype is not None and batch.is_floating_point():
        return batch.to(device, dtype, non_blocking=True)
    return batch.to(device, non_blocking=True)


def batch_size(target: Any) -> int:
    """Samples in a batch, from its target (a tensor, or a tuple of them)."""
    return len(target[0] if isinstance(target, (tuple, list)) else target)


class Chain:
    """Transforms applied in order to a sample's input. (torchvision's ``v2.Compose`` is
    this same loop; the core does not import torchvision for it.) Pickles when its
    transforms do, so DataLoader workers can use it."""

    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, value: Any) -> Any:
        for transform in self.transforms:
            value = transform(value)
        return value

    def __repr__(self) -> str:
        return f"Chain({self.transforms!r})"


class Transformed:
    """A map-style dataset whose inputs go through ``transform`` (one split's transforms)."""

    def __init__(self, dataset: Any, transform: Chain) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        inputs, target = self.dataset[index]
        return self.transform(inputs), target


def class_names(dataset: Any) -> list[str] | None:
    """The class names a dataset (or its training split) declares as ``classes``, if any."""
    from torchtk.core.state import Splits

    source = dataset.train if isinstance(dataset, Splits) else dataset
    names = getattr(source, "classes", None)
    return [str(name) for name in names] if isinstance(names, (list, tuple)) else None


def dataset_collate(dataset: Any) -> Any:
    """The dataset's own ``collate_fn`` (one that explains images of different sizes),
    else ``None``: torch's default."""
    from torchtk.core.state import Splits

    source = dataset.train if isinstance(dataset, Splits) else dataset
    collate = getattr(source, "collate_fn", None)
    return collate if callable(collate) else None


def split(dataset: Any, spec: RunSpec) -> tuple[Any, Any]:
    """Train and validation datasets: a dataset's own ``Splits``, or a reproducible
    random split by ``data.val_split`` from the run seed (``Subset`` views, or the index
    tensors themselves for a ``TensorDataset``)."""
    import torch
    from torch.utils.data import Subset

    from torchtk.core.state import Splits

    if isinstance(dataset, Splits):
        if dataset.train is None or len(dataset.train) == 0:
            raise UserInputError("data: the dataset's training split is empty")
        return dataset.train, dataset.val if dataset.val is not None and len(dataset.val) else None
    data = spec.data
    size = len(dataset)
    n_val = int(round(size * data.val_split))
    order = torch.randperm(size, generator=torch.Generator().manual_seed(spec.seed))
    train_index, val_index = order[n_val:], order[:n_val]
    if len(train_index) == 0:
        raise UserInputError(f"data.val_split={data.val_split} leaves no training samples out of {size}")
    return (Subset(dataset, train_index.tolist()), Subset(dataset, val_index.tolist()) if n_val else None)


def split_and_batch(dataset: Any, spec: RunSpec, device: Any, generator: Any,
                    transforms: tuple[Chain | None, Chain | None] = (None, None)) -> tuple[Any, Any]:
    """Train and validation batch iterables, split reproducibly from the run seed, each
    split with its own transforms."""
    from torch.utils.data import DataLoader, TensorDataset

    data = spec.data
    train, val = split(dataset, spec)
    shuffle, overfit = data.shuffle, bool(spec.trainer.overfit_batches)
    if overfit:  # the same first batches every epoch, validated on themselves
        train = val = overfit_subset(train, spec)
        shuffle = False
    in_memory = isinstance(dataset, TensorDataset) and data.num_workers == 0 and transforms == (None, None)
    if in_memory:
        def part(subset: Any, shuffle: bool) -> TensorBatches | None:
            if subset is None:
                return None
            tensors = [t[subset.indices].to(device) for t in dataset.tensors]
            return TensorBatches(tensors, data.batch_size, shuffle, generator)

        train_batches = part(train, shuffle)
        return train_batches, train_batches if overfit else part(val, False)
    train_transform, val_transform = transforms
    if train_transform is not None:
        train = Transformed(train, train_transform)
    if val is not None and val_transform is not None:
        val = Transformed(val, val_transform)
    options = {"batch_size": data.batch_size, "num_workers": data.num_workers, "collate_fn": dataset_collate(dataset),
               "pin_memory": device.type == "cuda" if data.pin_memory is None else data.pin_memory,
               "persistent_workers": data.persistent_workers and data.num_workers > 0}
    loader = DataLoader(train, shuffle=shuffle, generator=generator, **options)
    return loader, DataLoader(val, shuffle=False, **options) if val is not None else None
