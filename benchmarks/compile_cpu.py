"""What ``trainer.compile`` buys on a CNN on CPU: the shapes-dice U-Net, with and without torch.compile.

Trains the bundled ``shapes-dice`` example (a small U-Net, 1000 32x32 images, BCE + Dice)
for a few epochs with ``trainer.compile`` off and on, alternating, in this process, and
reports the steady-state epoch time (the median of the epochs after the first), the
speed-up, and what compiling costs once (the first epoch's extra time). Inductor's
generated C++ needs a compiler (gcc here).

    .venv/bin/python benchmarks/compile_cpu.py [--rounds 2] [--epochs 4] [--threads 2] [--mode default]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import torchtk


def run(compile_mode: str | bool, epochs: int, out: str) -> tuple[list[float], float]:
    torch._dynamo.reset()  # every compiled run pays its own compilation
    started = time.perf_counter()
    result = torchtk.train("shapes-dice", progress=False, overrides=[
        f"trainer.epochs={epochs}", "trainer.device=cpu", f"trainer.output_dir={out}",
        f"trainer.compile={str(compile_mode).lower() if isinstance(compile_mode, bool) else compile_mode}"])
    return result.epoch_seconds, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--mode", default="default", help="the compile mode of the compiled runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loads = [os.getloadavg()[0]]
    eager, compiled, eager_total, compiled_total, first = [], [], [], [], []
    with tempfile.TemporaryDirectory() as out:
        for index in range(args.rounds):
            for mode in ((False, args.mode) if index % 2 == 0 else (args.mode, False)):
                seconds, total = run(mode, args.epochs, out)
                if mode is False:
                    eager += seconds[1:]
                    eager_total.append(total)
                    eager_first = seconds[0]
                else:
                    compiled += seconds[1:]
                    compiled_total.append(total)
                    first.append(seconds[0])
                loads.append(os.getloadavg()[0])
            first[-1] -= eager_first
    e, c = statistics.median(eager), statistics.median(compiled)
    print(f"shapes-dice U-Net on CPU, {args.threads} thread(s), {args.rounds} rounds x {args.epochs} epochs, "
          f"compile mode {args.mode}")
    print(f"steady epoch s (median of epochs 2..):  eager {e:.3f}   compiled {c:.3f}   speed-up x{e / c:.2f}")
    print(f"   min / max: eager {min(eager):.3f} / {max(eager):.3f}   compiled {min(compiled):.3f} / {max(compiled):.3f}")
    print(f"compiling costs once (first epoch, compiled - eager): {statistics.median(first):.1f} s")
    print(f"whole run ({args.epochs} epochs): eager {statistics.median(eager_total):.1f} s, "
          f"compiled {statistics.median(compiled_total):.1f} s")
    print(f"load average (1 min): min {min(loads):.2f} / median {statistics.median(loads):.2f} / max {max(loads):.2f}"
          f" on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
