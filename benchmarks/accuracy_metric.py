"""Why ``accuracy`` is computed by torchtk and the other metrics by torchmetrics.

Prints the start-up cost of importing torchmetrics (fresh processes, alternating
``import torch`` and ``import torch, torchmetrics``) and the per-batch update cost of
torchtk's accuracy against torchmetrics' Accuracy on a validation batch of the rings
example (100 logits), one thread.

    .venv/bin/python benchmarks/accuracy_metric.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def import_seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def update_microseconds(metric, output, target, updates: int = 3000) -> float:
    metric.reset()
    started = time.perf_counter()
    for _ in range(updates):
        metric.update(output, target)
    metric.compute()
    return (time.perf_counter() - started) / updates * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    torch_only, with_tm = [], []
    for _ in range(rounds):
        torch_only.append(import_seconds("import torch"))
        with_tm.append(import_seconds("import torch, torchmetrics"))
    print(f"import torch: {statistics.median(torch_only):.2f} s, import torch, torchmetrics: "
          f"{statistics.median(with_tm):.2f} s (medians of {rounds})")

    import torch

    import torchtk

    torch.set_num_threads(1)
    output, target = torch.randn(100, 1), (torch.rand(100, 1) > 0.8).float()
    ours = torchtk.registry.create("metric", "accuracy")
    theirs = torchtk.registry.create("metric", "accuracy", task="binary", average="macro")  # torchmetrics' class
    times = [(update_microseconds(ours, output, target), update_microseconds(theirs, output, target))
             for _ in range(rounds)]
    print(f"update per batch: torchtk {statistics.median(t[0] for t in times):.0f} us, torchmetrics "
          f"{statistics.median(t[1] for t in times):.0f} us (medians of {rounds} x 3000 updates)")


if __name__ == "__main__":
    main()
