"""Epoch time of each precision on the CPU, as a ratio to fp32 measured in the same run.

The bundled ``rings`` workload with a wider MLP (``--hidden``), so the matrix products,
not the engine, decide the time; the precisions take turns each round, so machine noise
hits all alike. Prints the median of each precision's fastest epoch over the rounds, and
its ratio to fp32. fp16_true runs with Adam's ``eps=1e-4`` (1e-8 is 0 in float16).

    .venv/bin/python benchmarks/precision_cpu.py [--rounds 3] [--epochs 3] [--hidden 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

import torchtk

PRECISIONS = ["fp32", "bf16", "fp16", "bf16_true", "fp16_true", "fp64"]


def epoch_seconds(precision: str, epochs: int, hidden: int, output_dir: str) -> float:
    overrides = [f"precision={precision}", f"trainer.epochs={epochs}", "trainer.device=cpu",
                 f"trainer.output_dir={output_dir}", f"model.params.hidden=[{hidden},{hidden}]"]
    if precision == "fp16_true":
        overrides.append("optimizer.params.eps=0.0001")
    return min(torchtk.train("rings", overrides=overrides).epoch_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    with tempfile.TemporaryDirectory() as output_dir:
        for _ in range(args.rounds):
            for name in PRECISIONS:
                times[name].append(epoch_seconds(name, args.epochs, args.hidden, output_dir))
    reference = statistics.median(times["fp32"])
    print(f"rings, MLP [{args.hidden}, {args.hidden}], {args.threads} thread(s), torch {torch.__version__}")
    for name in PRECISIONS:
        median = statistics.median(times[name])
        print(f"{name:10s} {median * 1000:8.1f} ms per epoch   ratio to fp32 {median / reference:5.2f}")


if __name__ == "__main__":
    main()
