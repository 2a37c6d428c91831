"""Image loading throughput of torchtk's data pipeline against a plain torchvision script.

The benchmark writes its own images (by default 2,000 PNGs of 64x64 in 10 class folders)
into a temporary folder, then times full passes over them:

- torchtk: the ``image_folder`` dataset and the spec's train transforms, built by the
  core exactly as ``tk train`` builds them (``build_parts(..., upto="data")``: the
  split, the per-split transform chain, the DataLoader);
- plain: ``torchvision.datasets.ImageFolder`` with ``v2.Compose([ToImage(),
  ToDtype(float32, scale=True), <the same transforms>])`` and a ``DataLoader`` with
  the same batch size, shuffling and workers.

Rounds alternate between the two, so machine noise hits both alike. Prints images per
second (min / median / max) per worker count, the ratio of the medians (target >= 0.95)
and the load average.

    .venv/bin/python benchmarks/image_loading.py [--images 2000] [--size 64] [--rounds 5] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

TRANSFORMS = [
    {"name": "random_resized_crop", "params": {"size": 56, "scale": [0.5, 1.0]}},
    {"name": "random_horizontal_flip"},
    {"name": "normalize"},
]


def write_images(folder: Path, count: int, size: int, classes: int = 10) -> None:
    """Smooth random images (a coloured gradient plus mild noise), as PNG files."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for index in range(count):
        label = index % classes
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        base = rng.uniform(0, 255, (1, 1, 3)) * ramp[:, None, None] + rng.uniform(0, 255, (1, 1, 3)) * ramp[None, :, None]
        pixels = np.clip(base / 2 + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"class_{label}" / f"{index:05d}.png")


def torchtk_loader(folder: Path, workers: int, batch_size: int):
    from torchtk.core.assembly import build_parts
    from torchtk.core.distributed import SingleProcess
    from torchtk.core.spec import load_resolved

    spec = {
        "name": "image-loading", "seed": 0,
        "model": {"name": "mlp", "params": {"in_features": 1, "out_features": 1}},  # not built (upto="data")
        "data": {"name": "image_folder", "params": {"root": str(folder)}, "batch_size": batch_size,
                 "val_split": 0.0, "num_workers": workers, "transforms": {"train": TRANSFORMS}},
        "loss": "cross_entropy", "optimizer": "sgd", "trainer": {"device": "cpu"},
    }
    return build_parts(load_resolved(spec), SingleProcess(torch.device("cpu")), upto="data").train


def plain_loader(folder: Path, workers: int, batch_size: int):
    """What a careful user writes by hand."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.RandomResizedCrop(56, scale=(0.5, 1.0)), v2.RandomHorizontalFlip(),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    dataset = ImageFolder(str(folder), transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(0))


def images_per_second(loader) -> float:
    started = time.perf_counter()
    count = 0
    for inputs, _ in loader:
        count += len(inputs)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        write_images(folder, args.images, args.size)
        print(f"{args.images} PNGs of {args.size}x{args.size} in 10 classes, batch {args.batch_size}, "
              f"transforms: {', '.join(t['name'] for t in TRANSFORMS)}; {args.rounds} rounds, alternating")
        for workers in args.workers:
            loaders = {"torchtk": torchtk_loader(folder, workers, args.batch_size),
                       "plain": plain_loader(folder, workers, args.batch_size)}
            rates: dict[str, list[float]] = {name: [] for name in loaders}
            for loader in loaders.values():  # warm-up: file cache, imports
                images_per_second(loader)
            for round_ in range(args.rounds):
                order = list(loaders) if round_ % 2 == 0 else list(reversed(loaders))
                for name in order:
                    rates[name].append(images_per_second(loaders[name]))
            print(f"num_workers={workers}")
            for name, values in rates.items():
                print(f"  {name:8s} images/s  min {min(values):8.0f}  median {statistics.median(values):8.0f}"
                      f"  max {max(values):8.0f}")
            ratio = statistics.median(rates["torchtk"]) / statistics.median(rates["plain"])
            print(f"  ratio torchtk/plain (medians) {ratio:.3f}   (target >= 0.95)")
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
