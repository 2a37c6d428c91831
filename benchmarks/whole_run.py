"""A whole ``tk train rings`` process against a plain script doing the same work.

Both are fresh processes (imports included), run alternately so machine noise hits both
alike. The plain script is what a careful user writes by hand (:data:`PLAIN`): the same
rings data (same generator, same 70/30 split), the same MLP, Adam, BCE-with-logits,
gradient clipping at 20, StepLR, per-epoch validation with accuracy and a printed
line, and the final weights saved once with ``torch.save`` - but no resumable
checkpoints, no history files, no plot. Prints min / median / max of the wall time,
the CPU time (user + sys, less sensitive to a loaded machine) and the peak RSS of each
process (``os.wait4``: the child's own ``ru_maxrss``), the ratios of the medians
(targets: wall time and peak RSS <= 1.05), and the machine's load.

    .venv/bin/python benchmarks/whole_run.py [--rounds 9] [--threads 1] [--epochs 25]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = r'''
import math, sys, time
import torch
from torch import nn

epochs, out = int(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
generator = torch.Generator().manual_seed(0)  # the data's own seed (torchtk's rings dataset)

def ring(count, radius):
    r = radius + 1.0 * torch.randn(count, generator=generator)
    angle = 2 * math.pi * torch.rand(count, generator=generator)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)

x = torch.cat([ring(1000, 5.0), ring(6000, 8.0)])
y = torch.cat([torch.ones(1000, 1), torch.zeros(6000, 1)])
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
n_val = round(len(x) * 0.3)
x_val, y_val, x_train, y_train = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.3)
loss_fn = nn.BCEWithLogitsLoss()
shuffle = torch.Generator().manual_seed(0)
best = -1.0
for epoch in range(1, epochs + 1):
    started = time.perf_counter()
    model.train()
    total = torch.zeros(())
    perm = torch.randperm(len(x_train), generator=shuffle)
    for start in range(0, len(x_train), 100):
        index = perm[start:start + 100]
        loss = loss_fn(model(x_train[index]), y_train[index])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.detach() * len(index)
    scheduler.step()
    model.eval()
    with torch.no_grad():
        val_loss, correct = torch.zeros((), dtype=torch.float64), torch.zeros(())
        for start in range(0, len(x_val), 100):
            output, target = model(x_val[start:start + 100]), y_val[start:start + 100]
            val_loss += loss_fn(output, target) * len(target)
            correct += ((output > 0).float() == target).sum()
    accuracy = float(correct) / len(x_val)
    best = max(best, accuracy)
    print(f"epoch {epoch}/{epochs} train_loss={float(total) / len(x_train):.4f} "
          f"val_loss={float(val_loss) / len(x_val):.4f} val_accuracy={accuracy:.4f} "
          f"time={time.perf_counter() - started:.2f}s")
torch.save(model.state_dict(), out + "/model.pt")
print(f"best val_accuracy = {best:.4f}")
'''


def tk_command() -> list[str]:
    """``tk`` next to this Python (an installed venv), else ``python -m torchtk``."""
    tk = Path(sys.executable).parent / "tk"
    return [str(tk)] if tk.exists() else [sys.executable, "-m", "torchtk"]


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS in MiB of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{errors}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


def spread(values: list[float], unit: str) -> str:
    return " / ".join(f"{v:7.2f}" for v in (min(values), statistics.median(values), max(values))) + f" {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of both processes")
    parser.add_argument("--epochs", type=int, default=25, help="the rings example trains 25")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    work = Path(tempfile.mkdtemp(prefix="torchtk-whole-run-"))
    plain_file = work / "plain.py"
    plain_file.write_text(PLAIN)
    commands = {
        "plain script": [sys.executable, str(plain_file), str(args.epochs), str(work)],
        "tk train rings": tk_command() + ["train", "rings", "--set", f"trainer.output_dir={work / 'runs'}",
                                          "--set", f"trainer.epochs={args.epochs}", "--set", "trainer.device=cpu"],
    }
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
    loads = [os.getloadavg()[0]]
    try:
        for command in commands.values():  # warm the file cache
            measure(command, env)
        for round_ in range(args.rounds):
            names = list(commands) if round_ % 2 == 0 else list(reversed(commands))  # alternate who goes first
            for name in names:
                samples[name].append(measure(commands[name], env))
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"whole process, rings {args.epochs} epochs on cpu, OMP_NUM_THREADS={args.threads}, {args.rounds} rounds "
          f"alternating; min / median / max")
    medians = {}
    for name, rows in samples.items():
        wall, cpu, rss = (list(column) for column in zip(*rows))
        medians[name] = [statistics.median(wall), statistics.median(cpu), statistics.median(rss)]
        print(f"  {name:15s} wall {spread(wall, 's')}   cpu {spread(cpu, 's')}   peak RSS {spread(rss, 'MiB')}")
    tk, plain = medians["tk train rings"], medians["plain script"]
    for index, what in enumerate(("wall time", "cpu time", "peak RSS")):
        ratio = tk[index] / plain[index]
        goal = "" if what == "cpu time" else f"  {'OK' if ratio <= 1.05 else 'OVER'} against 1.05"
        print(f"  ratio of medians, {what:9s}: {ratio:.3f}{goal}")
    print(f"  load average (1 min) while running: {min(loads):.2f} .. {max(loads):.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
