"""Peak memory of saving a large checkpoint: buffered-then-written against streamed.

The reference is how torchtk used to save: ``torch.save`` into a ``BytesIO``, then
``atomic_write_bytes(path, buffer.getvalue())``. torchtk now streams ``torch.save``
into the temporary file of ``RunDir.save_checkpoint``. Each measurement runs in a fresh
subprocess: it builds a state dict of a few big float32 tensors, reads its peak RSS
(``ru_maxrss``), saves once, reads the peak again and reports the increase and the time
the save took. The two ways alternate (swapping which goes first every round), so
machine noise hits both alike. Prints min/median/max per way, the ratio of medians and
the load average.

    .venv/bin/python benchmarks/checkpoint_memory.py [--rounds 5] [--mb 200] [--tensors 4] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("buffered", "streamed")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure(way: str, megabytes: float, tensors: int, directory: Path) -> dict[str, float]:
    """One save in this (fresh) process: the peak-RSS increase it causes and its duration."""
    import io

    import torch

    from torchtk.core.outputs import RunDir, atomic_write_bytes

    torch.manual_seed(0)
    numel = int(megabytes * 2**20 / 4 / tensors)
    payload = {"epoch": 1, "model": {f"layer{i}.weight": torch.randn(numel) for i in range(tensors)}}
    run = RunDir(directory)
    before = peak_rss_mb()
    started = time.perf_counter()
    if way == "buffered":  # the old RunDir.save_checkpoint, as the reference
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = run.checkpoints / "last.pt"
        atomic_write_bytes(path, buffer.getvalue())
    else:
        path = run.save_checkpoint(payload, "last.pt")
    seconds = time.perf_counter() - started
    after = peak_rss_mb()
    run.close()
    return {"before_mb": before, "after_mb": after, "increase_mb": after - before, "seconds": seconds,
            "file_mb": path.stat().st_size / 2**20}


def spread(values: list[float], digits: int = 1) -> str:
    return "  ".join(f"{label} {value:7.{digits}f}"
                     for label, value in (("min", min(values)), ("median", statistics.median(values)),
                                          ("max", max(values))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=float, default=200.0, help="Size of the tensors in the checkpoint, in MB.")
    parser.add_argument("--tensors", type=int, default=4, help="How many tensors share that size.")
    parser.add_argument("--dir", default=None, help="Where to write (default: a temporary directory).")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.mb, args.tensors, Path(args.dir))))
        return
    results: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.dir) as out:
        for round_index in range(args.rounds):
            for way in WAYS if round_index % 2 == 0 else reversed(WAYS):
                child = subprocess.run(
                    [sys.executable, __file__, "--child", way, "--mb", str(args.mb), "--tensors", str(args.tensors),
                     "--dir", str(Path(out) / f"{way}-{round_index}")],
                    capture_output=True, text=True, check=True)
                results[way].append(json.loads(child.stdout.splitlines()[-1]))
                shutil.rmtree(Path(out) / f"{way}-{round_index}")
    load_after = os.getloadavg()
    file_mb = results["streamed"][0]["file_mb"]
    print(f"checkpoint of {args.tensors} float32 tensors, {file_mb:.1f} MB on disk; {args.rounds} rounds, "
          f"a fresh process per save")
    for way, label in (("buffered", "buffered + written"), ("streamed", "streamed (RunDir)")):
        increases = [r["increase_mb"] for r in results[way]]
        print(f"{label:20s} peak RSS increase MB  {spread(increases)}")
    for way, label in (("buffered", "buffered + written"), ("streamed", "streamed (RunDir)")):
        seconds = [r["seconds"] for r in results[way]]
        print(f"{label:20s} save seconds          {spread(seconds, 3)}")
    buffered = statistics.median(r["increase_mb"] for r in results["buffered"])
    streamed = statistics.median(r["increase_mb"] for r in results["streamed"])
    ratio = streamed / buffered if buffered else float("nan")
    print(f"ratio streamed/buffered (median increase)  {ratio:.3f}")
    print(f"peak RSS after building the payload, median MB: "
          f"{statistics.median(r['before_mb'] for w in WAYS for r in results[w]):.1f}")
    print("load average (1, 5, 15 min) before " + " ".join(f"{v:.2f}" for v in load_before)
          + ", after " + " ".join(f"{v:.2f}" for v in load_after) + f", on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
