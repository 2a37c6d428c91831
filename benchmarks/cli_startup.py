"""Start-up time of listing commands, against the libraries they need, in the same run.

`tk list losses` must not import torch. Target: at most 1.8x the median wall time of
`python -c "import pluggy, pydantic, typer"` (and under 0.25 s). Every command runs once
per round, in an order that rotates each round, so noise hits them alike; prints
min / median / max, the ratios of medians and the machine's load.

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
    "import pluggy, pydantic, typer": [sys.executable, "-c", "import pluggy, pydantic, typer"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}
LIBRARIES = "import pluggy, pydantic, typer"
GOAL = 1.8


def wall_time(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys, ``os.wait4``: less sensitive to a loaded
    machine than wall time) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "COLUMNS": "100"})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, command in COMMANDS.items():  # warm the file cache
        wall_time(command)
    loads = [os.getloadavg()[0]]
    names = list(COMMANDS)
    for round_ in range(args.rounds):  # alternate so noise hits every command alike
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            wall, seconds = wall_time(COMMANDS[name])
            times[name].append(wall)
            cpu[name].append(seconds)
        loads.append(os.getloadavg()[0])
    libraries = statistics.median(times[LIBRARIES])
    libraries_cpu = statistics.median(cpu[LIBRARIES])
    torch_median = statistics.median(times["python -c 'import torch'"])
    print(f"{args.rounds} rounds, rotating order; wall min / median / max, ratios of medians; cpu (user + sys) median")
    for name, samples in times.items():
        low, median, high = min(samples), statistics.median(samples), max(samples)
        print(f"  {name:32s} {low * 1e3:6.0f} / {median * 1e3:6.0f} / {high * 1e3:6.0f} ms   "
              f"x{median / libraries:5.2f} of the libraries   x{median / torch_median:5.2f} of import torch   "
              f"cpu {statistics.median(cpu[name]) * 1e3:5.0f} ms (x{statistics.median(cpu[name]) / libraries_cpu:.2f})")
    target = statistics.median(times["tk list losses"])
    ratio = target / libraries
    print(f"tk list losses: {target * 1e3:.0f} ms median, {ratio:.2f}x `python -c \"{LIBRARIES}\"`: "
          f"{'OK' if ratio <= GOAL else 'OVER'} against {GOAL}x, {'OK' if target <= 0.25 else 'OVER'} against 0.25 s")
    print(f"load average (1 min) while running: {min(loads):.2f} .. {max(loads):.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
