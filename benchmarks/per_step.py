"""What each configured callback, metric and param group costs per optimizer step, beyond its own work.

The engine's training epoch (``torchtk.core.loop.train_epoch`` with the run's
``Stepper``, built through the engine API from the ``rings`` spec) against a
hand-written epoch over the same batches, model, optimizer and loss that does the same
work by hand: it calls each callback's hook functions directly (a wrapper's generator
too), updates the same metrics and steps an optimizer with the same param groups.
What the engine adds over that is the framework's share, reported per step and per
item (callback, metric or group beyond the first).

Robust to a loaded machine: each configuration runs many short rounds (one epoch each),
engine and hand-written alternating in ABBA order in the same process, with the
garbage collector off while timing, and the cost is read from each round's paired
difference of the thread's CPU time (``time.thread_time``: time other processes take
from us is not counted), with the wall-clock median beside it. Prints min / median /
max of the paired differences and the machine's load.

    .venv/bin/python benchmarks/per_step.py [--rounds 30] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import torchtk
from torchtk.core.engine import Run
from torchtk.core.loop import train_epoch
from torchtk.core.progress import Reporter
from torchtk.core.registry import get_registry
from torchtk.core.run_hooks import RunHooks
from torchtk.core.spec import load_spec
from torchtk.core.stepper import Stepper


class PlainCallback:
    """A callback whose own work is one attribute write per hook call."""

    def __init__(self) -> None:
        self.calls = 0

    @torchtk.hookimpl
    def on_step(self, state: Any) -> None:
        self.calls += 1

    @torchtk.hookimpl
    def on_step_end(self, state: Any) -> None:
        self.calls += 1


class WrapperCallback:
    """The same work, written as a new-style pluggy wrapper around ``on_step``."""

    def __init__(self) -> None:
        self.calls = 0

    @torchtk.hookimpl(wrapper=True)
    def on_step(self, state: Any) -> Any:
        self.calls += 1
        result = yield
        self.calls += 1
        return result


def by_hand(callbacks: list[Any], hook: str) -> list[Any]:
    """The hook functions a careful user calls by hand (bound methods, no dispatch)."""
    return [getattr(c, hook) for c in callbacks if hasattr(c, hook)]


def grouped_optimizer(kind: type, model: torch.nn.Module, groups: int, lr: float) -> torch.optim.Optimizer:
    """An optimizer over the model's parameter tensors split into ``groups`` param groups."""
    params = list(model.parameters())
    size = -(-len(params) // groups)
    return kind([{"params": params[i:i + size]} for i in range(0, len(params), size)], lr=lr)


# the framework's share is Python around the same torch calls, the same whatever the model: the
# tiny workload (a 2-4-4-1 MLP, plain SGD, batches of 10: ~10x the steps, a tenth of the work per
# step) measures it with a tenth of the noise of rings (2-32-32-1, Adam, batches of 100)
WORKLOADS = {"rings": [],
             "tiny": ["model.params.hidden=[4,4]", 'optimizer={"name": "sgd", "params": {"lr": 0.01}}',
                      "data.batch_size=10"]}


class Workload:
    """One configuration, built twice from the same seed: the engine's run and a hand-written one."""

    def __init__(self, workload: str, callbacks: str, count: int, metrics: int, groups: int, out: Path) -> None:
        names = ["accuracy", "f1", "precision"][:metrics]
        overrides = ["trainer.device=cpu", f"trainer.output_dir={out}", "callbacks=[]", "trainer.progress=false",
                     "trainer.log_every_n_steps=1000", "metrics=" + json.dumps([{"name": n, "train": True}
                                                                                  for n in names] or ["accuracy"])]
        spec = load_spec("rings", overrides=overrides + WORKLOADS[workload])
        self.run = Run(spec, get_registry(), Reporter(), out / "run")
        parts = self.run.parts
        callback = {"plain": PlainCallback, "wrapper": WrapperCallback}.get(callbacks)
        self.engine_callbacks = [callback() for _ in range(count)] if callback else []
        self.hand_callbacks = [callback() for _ in range(count)] if callback else []
        lr = spec.optimizer.params["lr"]
        kind = type(parts.optimizer)
        parts.optimizer = self.run.state.optimizer = grouped_optimizer(kind, parts.model, groups, lr)
        parts.hooks = RunHooks(self.engine_callbacks)
        self.run.stepper = Stepper(parts, self.run.placement)
        torch.manual_seed(0)
        self.model = copy.deepcopy(parts.model)
        self.optimizer = grouped_optimizer(kind, self.model, groups, lr)
        self.metrics = [torchtk.registry.create("metric", n) for n in names]
        self.loss_fn = torch.nn.BCEWithLogitsLoss()
        self.steps = parts.info.batches_per_epoch

    def engine_epoch(self) -> None:
        run = self.run
        train_epoch(run.parts, run.state, run.stepper, run.placement, run.reporter, 1000)

    def hand_epoch(self) -> None:
        """The same work with no framework: batches, forward, loss, backward, the callbacks'
        functions, step, zero_grad, the loss sum on the device, the metric updates."""
        model, optimizer, loss_fn, metrics = self.model, self.optimizer, self.loss_fn, self.metrics
        state = self.run.state
        plain_step, plain_end = by_hand(self.hand_callbacks, "on_step"), by_hand(self.hand_callbacks, "on_step_end")
        wrappers = isinstance(self.hand_callbacks[0], WrapperCallback) if self.hand_callbacks else False
        for metric in metrics:
            metric.reset()
        model.train()
        total = torch.zeros(())
        for inputs, target in self.run.parts.train:
            output = model(inputs)
            loss = loss_fn(output, target)
            loss.backward()
            if wrappers:
                pending = [hook(state) for hook in plain_step]
                for generator in pending:
                    next(generator)
                for generator in reversed(pending):
                    try:
                        generator.send([])
                    except StopIteration:
                        pass
            else:
                for hook in plain_step:
                    hook(state)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for hook in plain_end:
                hook(state)
            total.add_(loss.detach(), alpha=len(target))
            if metrics:
                detached = output.detach().float()
                for metric in metrics:
                    metric.update(detached, target)
        _ = float(loss.detach()), total.item(), [m.compute() for m in metrics]


def python_calls(epoch: Any) -> int:
    """Python-level function calls (builtins included) one epoch makes, counted by cProfile:
    a gauge of framework work that no load on the machine changes."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    epoch()
    profile.disable()
    return sum(stat[1] for stat in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]


def measure(work: Workload, rounds: int) -> dict[str, list[float]]:
    """Paired per-step differences (engine - hand) in us, CPU and wall, over ``rounds`` ABBA rounds."""
    cpu, wall, engine_cpu_all, hand_cpu_all = [], [], [], []
    for _ in range(2):  # warm-up both paths (first-batch checks, allocator)
        work.engine_epoch()
        work.hand_epoch()
    gc.collect()
    gc.disable()
    try:
        for index in range(rounds):
            order = (work.engine_epoch, work.hand_epoch) if index % 2 == 0 else (work.hand_epoch, work.engine_epoch)
            times = {}
            for epoch in order:
                wall_start, cpu_start = time.perf_counter(), time.thread_time()
                epoch()
                times[epoch.__name__] = (time.thread_time() - cpu_start, time.perf_counter() - wall_start)
            (engine_cpu, engine_wall), (hand_cpu, hand_wall) = times["engine_epoch"], times["hand_epoch"]
            cpu.append((engine_cpu - hand_cpu) / work.steps * 1e6)
            engine_cpu_all.append(engine_cpu / work.steps * 1e6)
            hand_cpu_all.append(hand_cpu / work.steps * 1e6)
            wall.append((engine_wall - hand_wall) / work.steps * 1e6)
            if index % 10 == 9:
                gc.collect()  # between rounds, never inside one
    finally:
        gc.enable()
    calls = (python_calls(work.engine_epoch) - python_calls(work.hand_epoch)) / work.steps
    return {"cpu": cpu, "wall": wall, "engine_cpu": engine_cpu_all, "hand_cpu": hand_cpu_all, "calls": [calls]}


CONFIGS = [("baseline: no callbacks, no metrics, 1 group", "none", 0, 0, 1),
           ("2 callbacks (plain)", "plain", 2, 0, 1), ("5 callbacks (plain)", "plain", 5, 0, 1),
           ("2 callbacks (wrapper)", "wrapper", 2, 0, 1), ("5 callbacks (wrapper)", "wrapper", 5, 0, 1),
           ("1 train metric", "none", 0, 1, 1), ("3 train metrics", "none", 0, 3, 1),
           ("3 param groups", "none", 0, 0, 3), ("6 param groups", "none", 0, 0, 6)]


def best(result: dict[str, list[float]]) -> float:
    """Fastest engine epoch minus fastest hand-written epoch, per step (us)."""
    return min(result["engine_cpu"]) - min(result["hand_cpu"])


def items(label: str, count: int, metrics: int, groups: int) -> int:
    """How many items beyond the baseline a configuration adds (callbacks, metrics, extra groups)."""
    return count + metrics + (groups - 1)


def dispatch_table(repeats: int = 80, calls: int = 500) -> None:
    """The hook dispatch alone, per ``on_step`` call: RunHooks against calling the callbacks'
    functions by hand, and pluggy's generic caller (the path wrappers took before). The least
    of ``repeats`` timings of ``calls`` calls each: a tight loop, so load barely moves it."""
    import timeit

    import pluggy

    from torchtk.core import hookspecs

    state = object()
    print(f"\nhook dispatch per on_step call, us (least of {repeats} x {calls:,} calls)")
    print(f"{'callbacks':22} {'by hand':>8} {'RunHooks':>9} {'share/cb':>9} {'pluggy':>8}")
    for kind in (PlainCallback, WrapperCallback):
        for count in (1, 2, 5):
            callbacks = [kind() for _ in range(count)]
            hooks = RunHooks(callbacks)
            manager = pluggy.PluginManager("torchtk")
            manager.add_hookspecs(hookspecs)
            for callback in reversed(callbacks):
                manager.register(callback)
            functions = by_hand(callbacks, "on_step")

            def hand_plain() -> None:
                for function in functions:
                    function(state)

            def hand_wrapped() -> None:
                pending = [function(state) for function in functions]
                for generator in pending:
                    next(generator)
                for generator in reversed(pending):
                    try:
                        generator.send([])
                    except StopIteration:
                        pass

            hand = hand_wrapped if kind is WrapperCallback else hand_plain
            ours, theirs = (lambda: hooks.on_step(state)), (lambda: manager.hook.on_step(state=state))
            best = [min(timeit.repeat(f, number=calls, repeat=repeats)) / calls * 1e6 for f in (hand, ours, theirs)]
            label = f"{count} {'wrapper' if kind is WrapperCallback else 'plain'}"
            print(f"{label:22} {best[0]:8.3f} {best[1]:9.3f} {(best[1] - best[0]) / count:+9.3f} {best[2]:8.3f}")
    print("share/cb: (RunHooks - by hand) / callbacks; the engine makes at most two such calls per step "
          "(on_step, on_step_end)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="ABBA rounds (one epoch each) per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: no thread-pool noise)")
    parser.add_argument("--workload", choices=["tiny", "rings", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="baseline, 5 wrappers, 3 metrics, 6 groups only")
    parser.add_argument("--dispatch-only", action="store_true", help="only the hook dispatch table")
    args = parser.parse_args()
    if args.dispatch_only:
        dispatch_table()
        return
    torch.set_num_threads(args.threads)
    configs = [c for c in CONFIGS if not args.quick or c[0].startswith(("baseline", "5 callbacks (w", "3 t", "6"))]
    load_before = os.getloadavg()
    for workload in ("tiny", "rings") if args.workload == "both" else (args.workload,):
        with tempfile.TemporaryDirectory() as out:
            rows = []
            for label, kind, count, metrics, groups in configs:
                work = Workload(workload, kind, count, metrics, groups, Path(out) / f"{len(rows)}")
                rows.append((label, items(label, count, metrics, groups), work.steps, measure(work, args.rounds)))
        report(workload, rows, args)
    dispatch_table()
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def report(workload: str, rows: list[Any], args: Any) -> None:
    """One table: a row per configuration."""
    baseline = best(rows[0][3])
    print(f"\n{workload}: {rows[0][2]} steps/epoch, {args.rounds} ABBA rounds of one epoch per row, "
          f"{args.threads} thread(s), gc off while timing")
    print("engine - hand-written, us per optimizer step, thread CPU time: paired differences min / median / max;")
    print("'best' = fastest engine epoch - fastest hand epoch (load only ever adds time), the estimate used")
    print(f"{'configuration':44} {'min':>8} {'median':>8} {'max':>8}  {'best':>7} {'per item':>8}  "
          f"{'wall med':>8}  hand us/step  calls/step")
    for label, extra, _, result in rows:
        cpu = result["cpu"]
        share = f"{(best(result) - baseline) / extra:+8.2f}" if extra else f"{'':8}"
        print(f"{label:44} {min(cpu):8.2f} {statistics.median(cpu):8.2f} {max(cpu):8.2f}  {best(result):7.2f} "
              f"{share}  {statistics.median(result['wall']):8.2f}  {min(result['hand_cpu']):8.0f}"
              f"  {result['calls'][0]:+10.1f}")
    print("per item: (best - baseline best) / items the row adds (callbacks, metrics, groups beyond one); "
          "targets: per item <= 2 us, baseline <= 15 us")
    print("calls/step: Python-level calls per step the engine makes beyond the hand-written loop (cProfile, "
          "one epoch each; not changed by load)")


if __name__ == "__main__":
    main()
