"""Start-up time of listing commands, against `python -c "import torch"` in the same run.

`tk list losses` must not import torch; target: under 0.5 s median wall time.

    .venv/bin/python benchmarks/cli_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "tk list losses": [str(BIN / "tk"), "list", "losses"],
    "tk plugins": [str(BIN / "tk"), "plugins"],
    "tk --help": [str(BIN / "tk"), "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "COLUMNS": "100"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, command in COMMANDS.items():  # warm the file cache
        wall_time(command)
    for _ in range(args.rounds):  # alternate so noise hits every command alike
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    reference = statistics.median(times["python -c 'import torch'"])
    print(f"median wall time over {args.rounds} rounds (ratio to `import torch`)")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"  {name:28s} {median * 1e3:7.0f} ms   ratio {median / reference:.2f}")
    target = statistics.median(times["tk list losses"])
    print(f"tk list losses: {'OK' if target < 0.5 else 'OVER'} against the 0.5 s target")


if __name__ == "__main__":
    main()
