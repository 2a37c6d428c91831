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

    def __init__(self, tensors: list[Any], batch_size: int, shuffle: bool, generator: Any) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.size = len(tensors[0])

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[list[Any]]:
        import torch

        if self.shuffle:
            order = torch.randperm(self.size, generator=self.generator).to(self.tensors[0].device)
            for start in range(0, self.size, self.batch_size):
                index = order[start:start + self.batch_size]
                yield [t[index] for t in self.tensors]
        else:
            for start in range(0, self.size, self.batch_size):
                yield [t[start:start + self.batch_size] for t in self.tensors]


def to_device(batch: Any, device: Any) -> Any:
    """A tensor, or a tuple/list of them (multi-input losses such as triplet or CTC), on ``device``."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch.to(device, non_blocking=True) if hasattr(batch, "to") else batch


def batch_size(target: Any) -> int:
    """Samples in a batch, from its target (a tensor, or a tuple of them)."""
    return len(target[0] if isinstance(target, (tuple, list)) else target)


def split_and_batch(dataset: Any, spec: RunSpec, device: Any, generator: Any) -> tuple[Any, Any]:
    """Train and validation batch iterables, split reproducibly from the run seed."""
    import torch
    from torch.utils.data import DataLoader, Subset, TensorDataset

    data = spec.data
    size = len(dataset)
    n_val = int(round(size * data.val_split))
    order = torch.randperm(size, generator=torch.Generator().manual_seed(spec.seed))
    train_index, val_index = order[n_val:], order[:n_val]
    if len(train_index) == 0:
        raise UserInputError(f"data.val_split={data.val_split} leaves no training samples out of {size}")
    if isinstance(dataset, TensorDataset) and data.num_workers == 0:
        def part(index: Any, shuffle: bool) -> TensorBatches | None:
            if len(index) == 0:
                return None
            tensors = [t[index].to(device) for t in dataset.tensors]
            return TensorBatches(tensors, data.batch_size, shuffle, generator)

        return part(train_index, data.shuffle), part(val_index, False)
    pin = device.type == "cuda"
    train = DataLoader(Subset(dataset, train_index.tolist()), batch_size=data.batch_size, shuffle=data.shuffle,
                       generator=generator, num_workers=data.num_workers, pin_memory=pin)
    val = None
    if n_val:
        val = DataLoader(Subset(dataset, val_index.tolist()), batch_size=data.batch_size, shuffle=False,
                         num_workers=data.num_workers, pin_memory=pin)
    return train, val


# -- the run -------------------------------------------------------------------------
