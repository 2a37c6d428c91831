"""Per-step overhead of the torchtk engine against a minimal hand-written loop.

Both run the bundled ``rings`` workload (same model, data, batches, Adam, BCE, gradient
clipping, StepLR, validation with accuracy every epoch) in this process, alternating,
so machine noise hits both alike. Prints min/median/max, the ratio, the overhead per
optimizer step (target: <= 50 us per step) and the machine's load. ``--no-callbacks``
drops grad_clip from both sides: the engine's cost with no callback configured.

Robust to a loaded machine (it used to read x1.13 under load where equivalent probes read
x1.0): many short rounds instead of a few long ones; the order alternates every round
(ABBA) instead of the hand loop always first, so a load that rises or falls during a
round no longer falls on the engine alone; a full garbage collection before every timed
run and ``gc.freeze()`` after the warm-up, so the collector's passes over the engine's
long-lived objects (spec models, registry) do not land in its epochs; and each epoch is
timed in thread CPU time as well as wall time (``time.thread_time``: time the scheduler
gives to other processes is not counted; the engine's epochs are clocked by a callback
at ``on_epoch_start``/``on_epoch_end``). The per-step overhead is reported from the
medians and from the fastest epochs (load only ever adds time), with the load sampled
every round.

    .venv/bin/python benchmarks/engine_overhead.py [--rounds 16] [--epochs 4] [--no-callbacks]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import types

import torch

import torchtk
from torchtk.core.spec import load_spec
from torchtk.testing import registry_with


class CpuClock:
    """Thread CPU seconds of each epoch of a run (the engine's side of the CPU-time comparison)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.started = 0.0

    @torchtk.hookimpl
    def on_epoch_start(self, state: object) -> None:
        self.started = time.thread_time()

    @torchtk.hookimpl
    def on_epoch_end(self, state: object) -> None:
        self.seconds.append(time.thread_time() - self.started)


def clock_plugin(clock: CpuClock) -> types.ModuleType:
    """A plugin providing the ``cpu_clock`` callback (the one ``clock`` object)."""
    module = types.ModuleType("engine_overhead_clock")

    @torchtk.hookimpl
    def register_components(register):
        register(torchtk.Component("callback", "cpu_clock", "Thread CPU time per epoch.", params=torchtk.NoParams))

    @torchtk.hookimpl
    def make_callback(name, params):
        return clock if name == "cpu_clock" else None

    module.register_components, module.make_callback = register_components, make_callback
    return module


def hand_written_epochs(spec, epochs: int, clip: bool = True) -> list[float]:
    """What a careful user writes by hand: the same work, no framework."""
    torch.manual_seed(spec.seed)
    dataset = torchtk.registry.create("dataset", "rings", **spec.data.params)
    x, y = dataset.tensors
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
    n_val = int(round(len(x) * spec.data.val_split))
    x_val, y_val, x_train, y_train = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    model = torchtk.registry.create("model", "mlp", **spec.model.params)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.optimizer.params["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, **spec.scheduler[0].params)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    max_norm = spec.callbacks[0].params["max_norm"] if clip else None
    parameters = list(model.parameters())
    generator = torch.Generator().manual_seed(spec.seed)
    batch = spec.data.batch_size
    seconds, cpu = [], []
    for _ in range(epochs):
        started, cpu_started = time.perf_counter(), time.thread_time()
        model.train()
        total = torch.zeros(())
        perm = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(x_train), batch):
            index = perm[start:start + batch]
            loss = loss_fn(model(x_train[index]), y_train[index])
            total += loss.detach()
            loss.backward()
            if max_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            correct = 0
            val_loss = torch.zeros(())
            for start in range(0, len(x_val), batch):
                out = model(x_val[start:start + batch])
                val_loss += loss_fn(out, y_val[start:start + batch]) * len(out)
                correct += ((out > 0).float() == y_val[start:start + batch]).sum()
        _ = total.item(), val_loss.item(), float(correct)
        scheduler.step()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
    hand_written_epochs.cpu = cpu  # type: ignore[attr-defined]
    return seconds


def spread(values: list[float], scale: float) -> str:
    """``min / median / max`` of ``values`` times ``scale``."""
    return " / ".join(f"{v * scale:8.2f}" for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16, help="alternating rounds (ABBA order)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not counted)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-callbacks", action="store_true", help="no grad_clip on either side")
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning row (bench extra)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = not args.no_callbacks
    loads = [os.getloadavg()[0]]
    clock = CpuClock()
    registry = registry_with(clock_plugin(clock))
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"trainer.epochs={args.epochs}", f"trainer.output_dir={out}", "trainer.device=cpu",
                     "trainer.progress=false"]
        callbacks = ([{"name": "grad_clip", "params": {"max_norm": 20}}] if clip else []) + [{"name": "cpu_clock"}]
        spec = load_spec("rings", overrides=overrides + ["callbacks=" + json.dumps(callbacks)], registry=registry)
        steps = None
        hand, engine, engine_total, hand_total, hand_cpu, engine_cpu = [], [], [], [], [], []
        hand_written_epochs(spec, 2, clip)  # warm-up both paths
        torchtk.train(spec, overrides=["trainer.epochs=2"], registry=registry, progress=False)
        gc.collect()
        gc.freeze()  # what exists now (modules, registry, spec) is never scanned again
        for index in range(args.rounds):
            for side in (("hand", "engine") if index % 2 == 0 else ("engine", "hand")):
                gc.collect()
                started = time.perf_counter()
                if side == "hand":
                    epochs = hand_written_epochs(spec, args.epochs, clip)
                    hand_total.append(time.perf_counter() - started)
                    hand += epochs[1:]
                    hand_cpu += hand_written_epochs.cpu[1:]
                else:
                    clock.seconds = []
                    result = torchtk.train(spec, registry=registry, progress=False)
                    engine_total.append(time.perf_counter() - started)
                    engine += result.epoch_seconds[1:]
                    engine_cpu += clock.seconds[1:]
                    steps = steps or round(torch.load(result.run_dir / "checkpoints/last.pt",
                                                      weights_only=True)["step"] / len(result.history))
            loads.append(os.getloadavg()[0])
    report(args, clip, steps, hand, engine, hand_cpu, engine_cpu, hand_total, engine_total, loads)
    if not args.no_lightning:
        lightning_row(args)


def lightning_row(args) -> None:
    """Lightning on the same workload, in a subprocess (its import sets PYTORCH_NVML_BASED_CUDA_CHECK=1
    and changes warnings filters: never in this process), against the hand loop timed in that process."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent / "lightning_rings.py"
    command = [sys.executable, str(script), "--rounds", str(max(2, args.rounds // 4)), "--epochs", str(args.epochs),
               "--threads", str(args.threads)] + (["--no-callbacks"] if args.no_callbacks else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"Lightning (separate process): failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    result = json.loads(lines[-1])
    if "missing" in result:
        print(f"Lightning (separate process): skipped, {result['missing']}")
        return
    hand, light, steps = result["hand"], result["lightning"], result["steps"]
    extra = (statistics.median(light) - statistics.median(hand)) * 1e6 / steps
    print(f"Lightning {result['version']} (separate process, its own hand loop alternating): epoch ms "
          f"{spread(light, 1e3)} vs hand {spread(hand, 1e3)}; ratio {statistics.median(light) / statistics.median(hand):.3f},"
          f" {extra:+.0f} us per step")


def report(args, clip, steps, hand, engine, hand_cpu, engine_cpu, hand_total, engine_total, loads) -> None:
    """The table: wall and CPU epochs, ratios, per-step overhead (median and fastest), load."""
    hand_ms, engine_ms = statistics.median(hand) * 1e3, statistics.median(engine) * 1e3
    ratios = [e / h for e, h in zip(engine, hand)]
    print(f"rings, {steps} steps/epoch, {args.rounds} alternating rounds x {args.epochs} epochs (first not counted),"
          f" {args.threads} thread(s), callbacks: {'grad_clip' if clip else 'none'}")
    print("epoch ms                 min /   median /      max")
    print(f"hand-written, wall    {spread(hand, 1e3)}  ({hand_ms * 1e3 / steps:6.0f} us/step median)")
    print(f"torchtk engine, wall  {spread(engine, 1e3)}  ({engine_ms * 1e3 / steps:6.0f} us/step median)")
    print(f"hand-written, CPU     {spread(hand_cpu, 1e3)}")
    print(f"torchtk engine, CPU   {spread(engine_cpu, 1e3)}")
    print(f"ratio engine/hand, wall, epoch by epoch: {spread(ratios, 1)}   (median of medians "
          f"{engine_ms / hand_ms:.3f}; CPU median of medians "
          f"{statistics.median(engine_cpu) / statistics.median(hand_cpu):.3f})")
    for name, e, h in (("wall", engine, hand), ("CPU", engine_cpu, hand_cpu)):
        median = (statistics.median(e) - statistics.median(h)) * 1e6 / steps
        fastest = (min(e) - min(h)) * 1e6 / steps
        print(f"overhead per step, {name:4}  {median:+7.1f} us from the medians, {fastest:+7.1f} us from the "
              f"fastest epochs   (target <= 50 us)")
    print(f"whole run incl. setup, checkpoints, history, curves.png: engine {statistics.median(engine_total):.2f} s"
          f" vs hand loop {statistics.median(hand_total):.2f} s")
    print(f"load average (1 min) over the rounds: min {min(loads):.2f} / median {statistics.median(loads):.2f} / "
          f"max {max(loads):.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
