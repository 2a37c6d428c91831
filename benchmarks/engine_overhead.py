"""Per-step overhead of the torchtk engine against a minimal hand-written loop.

Both run the bundled ``rings`` workload (same model, data, batches, Adam, BCE, gradient
clipping, StepLR, validation with accuracy every epoch) in this process, alternating,
so machine noise hits both alike. Prints min/median/max, the ratio, the overhead per
optimizer step (target: <= 50 us per step) and the machine's load. ``--no-callbacks``
drops grad_clip from both sides: the engine's cost with no callback configured.

    .venv/bin/python benchmarks/engine_overhead.py [--rounds 7] [--epochs 10] [--no-callbacks]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import torchtk
from torchtk.core.spec import load_spec


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
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
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
    return seconds


def spread(values: list[float], scale: float) -> str:
    """``min / median / max`` of ``values`` times ``scale``."""
    return " / ".join(f"{v * scale:8.2f}" for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-callbacks", action="store_true", help="no grad_clip on either side")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = not args.no_callbacks
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"trainer.epochs={args.epochs}", f"trainer.output_dir={out}", "trainer.device=cpu"]
        spec = load_spec("rings", overrides=overrides + ([] if clip else ["callbacks=[]"]))
        steps = None
        hand, engine, engine_total, hand_total = [], [], [], []
        hand_written_epochs(spec, 2, clip)  # warm-up both paths
        torchtk.train(spec, overrides=["trainer.epochs=2"])
        for _ in range(args.rounds):
            started = time.perf_counter()
            epochs = hand_written_epochs(spec, args.epochs, clip)
            hand_total.append(time.perf_counter() - started)
            hand += epochs[1:]
            started = time.perf_counter()
            result = torchtk.train(spec)
            engine_total.append(time.perf_counter() - started)
            engine += result.epoch_seconds[1:]
            steps = steps or round(len(result.history) and
                                   torch.load(result.run_dir / "checkpoints/last.pt", weights_only=True)["step"]
                                   / len(result.history))
    hand_ms = statistics.median(hand) * 1e3
    engine_ms = statistics.median(engine) * 1e3
    per_step_us = (engine_ms - hand_ms) * 1e3 / steps
    ratios = [e / h for e, h in zip(engine, hand)]
    print(f"rings, {steps} steps/epoch, {args.rounds} rounds x {args.epochs} epochs, 1 thread, "
          f"callbacks: {'grad_clip' if clip else 'none'}")
    print("epoch ms             min /   median /      max")
    print(f"hand-written loop  {spread(hand, 1e3)}  ({hand_ms * 1e3 / steps:6.0f} us/step median)")
    print(f"torchtk engine     {spread(engine, 1e3)}  ({engine_ms * 1e3 / steps:6.0f} us/step median)")
    print(f"ratio engine/hand, epoch by epoch: {spread(ratios, 1)}   (median of medians {engine_ms / hand_ms:.3f})")
    print(f"overhead per step  {per_step_us:+.1f} us   (target <= 50 us)")
    print(f"whole run incl. setup, checkpoints, history, curves.png: engine {statistics.median(engine_total):.2f} s"
          f" vs hand loop {statistics.median(hand_total):.2f} s")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
