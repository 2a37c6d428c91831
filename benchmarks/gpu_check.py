"""GPU readiness: torchtk's engine against a hand-written loop on resnet18, images per second.

resnet18 (torchvision, random initialisation, 10 classes) on fake images held in
memory, cross entropy, SGD with momentum, no validation. Each row trains the same
configuration twice in this process, ``torchtk.train`` with a spec and a hand-written
loop doing the same work (the same batches, autocast, GradScaler, memory format,
copies), alternating, and reports images per second of each and their ratio
(target >= 0.98). Rows: fp32, fp32 with TF32 matmuls, bf16 autocast (with and without
channels_last), fp16 autocast + GradScaler (with and without channels_last), the
DataLoader path (batches from CPU memory with pin_memory and non-blocking copies, two
workers), and one torch.compile run. Under 5 minutes on one GPU; on CPU
(``--device cpu``) the sizes shrink (32x32 images, a few batches) so it runs in seconds,
and the compile row (minutes of compiling) and the fp16 rows (torch's float16
convolutions on CPU run at about 1/30 of float32's speed) are skipped unless
``--compile`` / ``--fp16``. Prints one table.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--epochs 3] [--compile] [--fp16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from typing import Any

import torch

import torchtk
from torchtk.testing import registry_with


@dataclass
class Size:
    samples: int
    image: int
    batch: int
    epochs: int


@dataclass
class Row:
    label: str
    precision: str = "fp32"  # fp32, bf16 (autocast), fp16 (autocast + GradScaler)
    channels_last: bool = False
    tf32: bool | None = None
    loader: bool = False  # batches through a DataLoader from CPU memory (pin_memory, non_blocking, 2 workers)
    compile: bool = False


ROWS = [Row("fp32"), Row("fp32 + tf32", tf32=True), Row("bf16 autocast", "bf16"),
        Row("bf16 autocast + channels_last", "bf16", channels_last=True),
        Row("fp16 autocast + GradScaler", "fp16"),
        Row("fp16 + GradScaler + channels_last", "fp16", channels_last=True),
        Row("bf16 DataLoader: pin_memory, non_blocking", "bf16", loader=True),
        Row("bf16 + channels_last + torch.compile", "bf16", channels_last=True, compile=True)]


def fake_images(size: Size) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(size.samples, 3, size.image, size.image, generator=generator)
    return torch.utils.data.TensorDataset(images, torch.randint(0, 10, (size.samples,), generator=generator))


def plugin(size: Size) -> types.ModuleType:
    """The fake images as a torchtk dataset plugin (``gpu_check_images``, a TensorDataset)."""
    module = types.ModuleType("gpu_check_data")

    @torchtk.hookimpl
    def register_components(register: Any) -> None:
        register(torchtk.Component("dataset", "gpu_check_images", "Random images in memory (benchmarks/gpu_check.py).",
                                   params=torchtk.NoParams))

    @torchtk.hookimpl
    def make_dataset(name: str, params: Any) -> Any:
        return fake_images(size) if name == "gpu_check_images" else None

    module.register_components, module.make_dataset = register_components, make_dataset
    return module


def spec(row: Row, size: Size, device: str, out: str) -> dict[str, Any]:
    return {"name": "gpu-check", "seed": 0,
            "model": {"name": "resnet18", "params": {"num_classes": 10}},
            "data": {"name": "gpu_check_images", "batch_size": size.batch, "val_split": 0.0,
                     "num_workers": 2 if row.loader else 0, "pin_memory": row.loader and device != "cpu",
                     "persistent_workers": row.loader},
            "loss": "cross_entropy", "optimizer": {"name": "sgd", "params": {"lr": 0.01, "momentum": 0.9}},
            "precision": row.precision,
            "trainer": {"epochs": size.epochs, "device": device, "output_dir": out, "progress": False,
                        "monitor": "train_loss", "log_every_n_steps": 10_000, "compile": row.compile,
                        "channels_last": row.channels_last, "tf32": row.tf32}}


def engine_seconds(row: Row, size: Size, device: str, registry: Any) -> list[float]:
    """Seconds per training epoch of ``torchtk.train`` (each ends reading the epoch's loss)."""
    with tempfile.TemporaryDirectory() as out:
        result = torchtk.train(spec(row, size, device, out), registry=registry, progress=False)
    return result.epoch_seconds


def hand_seconds(row: Row, size: Size, device: str) -> list[float]:
    """The same work by hand: what a careful user writes for this row."""
    from torchtk.core.speed import set_tf32
    import torchvision

    dev = torch.device(device)
    torch.manual_seed(0)
    set_tf32(row.tf32)
    model = torchvision.models.resnet18(weights=None, num_classes=10).to(dev)
    fmt = torch.channels_last if row.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model) if row.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(row.precision)
    scaler = torch.amp.GradScaler(dev.type) if row.precision == "fp16" else None
    data = fake_images(size)
    if row.loader:
        batches: Any = torch.utils.data.DataLoader(data, batch_size=size.batch, shuffle=True, num_workers=2,
                                                   pin_memory=dev.type != "cpu", persistent_workers=True,
                                                   generator=torch.Generator().manual_seed(0))
    else:
        images, labels = (t.to(dev) for t in data.tensors)
        images = images.contiguous(memory_format=fmt)
        generator = torch.Generator().manual_seed(0)

        def in_memory() -> Any:
            order = torch.randperm(len(images), generator=generator).to(dev)
            for start in range(0, len(images), size.batch):
                index = order[start:start + size.batch]
                yield images[index], labels[index]

        batches = types.SimpleNamespace(__iter__=in_memory)
    seconds = []
    model.train()
    for _ in range(size.epochs):
        started = time.perf_counter()
        total = torch.zeros((), device=dev)
        for inputs, target in (batches if row.loader else in_memory()):
            if row.loader:
                inputs = inputs.to(dev, non_blocking=True).contiguous(memory_format=fmt)
                target = target.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=dtype) if dtype else contextlib.nullcontext():
                loss = loss_fn(step_model(inputs), target)
            total.add_(loss.detach(), alpha=len(target))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _ = total.item()  # the engine reads its epoch's loss sum too: both end synchronised
        seconds.append(time.perf_counter() - started)
    return seconds


def images_per_second(seconds: list[float], size: Size) -> float:
    """Steady-state rate: the median of the epochs after the first (cuDNN autotuning, compilation)."""
    steady = seconds[1:] if len(seconds) > 1 else seconds
    return size.samples / statistics.median(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 3 on GPU, 2 on CPU)")
    parser.add_argument("--rounds", type=int, default=1, help="engine/hand pairs per row, alternating")
    parser.add_argument("--compile", action="store_true", help="run the torch.compile row on CPU too")
    parser.add_argument("--fp16", action="store_true", help="run the fp16 rows on CPU too")
    parser.add_argument("--rows", default=None, help="comma-separated row numbers (1-based) to run")
    parser.add_argument("--samples", type=int, help="images (default: 4096 on GPU, 64 on CPU)")
    parser.add_argument("--image", type=int, help="image side in pixels (default: 224 on GPU, 32 on CPU)")
    parser.add_argument("--batch", type=int, help="batch size (default: 128 on GPU, 16 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: up to 4)")
    args = parser.parse_args()
    cpu = args.device == "cpu"
    default = Size(64, 32, 16, 2) if cpu else Size(4096, 224, 128, 3)
    size = Size(args.samples or default.samples, args.image or default.image, args.batch or default.batch,
                args.epochs or default.epochs)
    if cpu:
        torch.set_num_threads(args.threads or min(4, os.cpu_count() or 1))
    registry = registry_with(plugin(size))
    wanted = {int(i) for i in args.rows.split(",")} if args.rows else None
    print(f"resnet18, {size.samples} fake {size.image}x{size.image} images in batches of {size.batch}, "
          f"{size.epochs} epochs per run (rate: median of epochs 2..), device {args.device}"
          + (f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else
             f", {torch.get_num_threads()} threads") + f", torch {torch.__version__}")
    print(f"{'configuration':44} {'engine img/s':>13} {'hand img/s':>11} {'ratio':>7}")
    ratios = []
    for number, row in enumerate(ROWS, 1):
        if wanted is not None and number not in wanted:
            continue
        if row.compile and cpu and not args.compile:
            print(f"{row.label:44} skipped on CPU (--compile runs it: minutes of compiling)")
            continue
        if row.precision == "fp16" and cpu and not args.fp16:
            print(f"{row.label:44} skipped on CPU (--fp16 runs it: float16 convolutions are slow there)")
            continue
        engine, hand = [], []
        for index in range(args.rounds):
            first, second = (engine, hand) if index % 2 == 0 else (hand, engine)
            for target in (first, second):
                if target is engine:
                    engine.append(images_per_second(engine_seconds(row, size, args.device, registry), size))
                else:
                    hand.append(images_per_second(hand_seconds(row, size, args.device), size))
        ratio = statistics.median(engine) / statistics.median(hand)
        ratios.append(ratio)
        print(f"{row.label:44} {statistics.median(engine):13.1f} {statistics.median(hand):11.1f} {ratio:7.3f}",
              flush=True)
    print(f"ratio engine/hand: min {min(ratios):.3f}, median {statistics.median(ratios):.3f} (target >= 0.98)"
          + (f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores" if cpu else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
