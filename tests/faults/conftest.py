"""Fixtures of the fault-injection tests (``pytest -m faults``, or ``pytest tests/faults``):
a plugin whose callbacks misbehave on cue, and helpers to run ``tk`` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A plugin distribution "torchtk-faults 1.2.3" (module torchtk_fake_faults): callbacks that
# raise, exit, signal their own process or dawdle in on_exception, each at a chosen moment.
FAULTS_PLUGIN = '''
import os, signal, sys, time
from pydantic import Field
from torchtk import Component, NoParams, Params, hookimpl


class ExplodeParams(Params):
    """Raise in one hook at one epoch."""
    hook: str = Field("on_epoch_end", description="The run hook that raises.")
    epoch: int = Field(2, description="The epoch it raises in.")
    exit: bool = Field(False, description="Call sys.exit(0) instead of raising ValueError.")


class SignalParams(Params):
    """Send a signal to this process at one optimizer step, once per marker file."""
    signal: str = Field("SIGTERM", description="SIGINT or SIGTERM.")
    step: int = Field(20, description="The optimizer step (1-based, over the run) at which it is sent.")
    marker: str = Field(description="Created when the signal is sent; no signal while it exists.")


class RecordParams(Params):
    """Record on_exception in a file, after sleeping in it."""
    path: str = Field(description="Where the exception's type is written.")
    sleep: float = Field(0.0, description="Seconds on_exception takes.")


class Explode:
    def __init__(self, params):
        self.params = params

    def fire(self, state, hook):
        if hook == self.params.hook and state.epoch == self.params.epoch:
            if self.params.exit:
                sys.exit(0)
            raise ValueError(f"boom in {hook}")

    @hookimpl
    def on_epoch_start(self, state):
        self.fire(state, "on_epoch_start")

    @hookimpl
    def on_step(self, state):
        self.fire(state, "on_step")

    @hookimpl
    def on_epoch_end(self, state):
        self.fire(state, "on_epoch_end")

    @hookimpl
    def on_validation_end(self, state):
        self.fire(state, "on_validation_end")

    @hookimpl
    def on_save_checkpoint(self, state, checkpoint):
        self.fire(state, "on_save_checkpoint")


class SignalAt:
    def __init__(self, params):
        self.params = params

    @hookimpl
    def on_step(self, state):
        if state.step + 1 == self.params.step and not os.path.exists(self.params.marker):
            open(self.params.marker, "w").close()
            os.kill(os.getpid(), getattr(signal, self.params.signal))


class Record:
    def __init__(self, params):
        self.params = params

    @hookimpl
    def on_exception(self, state, exception):
        with open(self.params.path, "w") as handle:
            handle.write(type(exception).__name__)
        time.sleep(self.params.sleep)


class EpochParams(Params):
    """Act at the end of one epoch."""
    epoch: int = Field(2, description="The epoch.")
    path: str = Field("", description="fill_disk: a file to grow until the disk is full.")


class Poison:
    """Set the first parameter to inf after the epoch's last update (the loss was finite)."""
    def __init__(self, params):
        self.params = params

    @hookimpl
    def on_epoch_end(self, state):
        if state.epoch == self.params.epoch:
            next(state.model.parameters()).data.fill_(float("inf"))


class FillDisk:
    """Fill the file system that holds path, as a long run's other writers would; once
    (path + ".done" marks it), so a resumed run finds the room that was made."""
    def __init__(self, params):
        self.params = params

    @hookimpl
    def on_epoch_end(self, state):
        if state.epoch == self.params.epoch and not os.path.exists(self.params.path + ".done"):
            open(self.params.path + ".done", "w").close()
            with open(self.params.path, "wb", buffering=0) as handle:
                try:
                    while True:
                        handle.write(b"x" * 4096)
                except OSError:
                    pass


class NanRingsParams(Params):
    """Rings, with nan inputs in every every-th sample."""
    n: int = Field(400, description="Samples.")
    every: int = Field(97, description="Every how many samples one is nan.")


def flaky_model(fail_after: int = 20):
    """A linear model whose forward raises after fail_after training batches."""
    import torch

    class Flaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += self.training
            if self.calls > fail_after:
                raise RuntimeError("flaky forward")
            return self.linear(x)

    return Flaky()


@hookimpl
def register_components(register):
    register(Component("callback", "explode", "Raises in a hook.", params=ExplodeParams))
    register(Component("callback", "signal_at", "Signals its own process.", params=SignalParams))
    register(Component("callback", "record_exception", "Records on_exception.", params=RecordParams))
    register(Component("callback", "poison", "Makes the weights inf.", params=EpochParams))
    register(Component("callback", "fill_disk", "Fills the disk.", params=EpochParams))
    register(Component("dataset", "nan_rings", "Rings with nan inputs.", params=NanRingsParams))
    register(Component("loss", "flaky_loss", "BCE that raises after some training batches.", params=FlakyParams))


@hookimpl
def make_callback(name, params):
    return {"explode": Explode, "signal_at": SignalAt, "record_exception": Record, "poison": Poison,
            "fill_disk": FillDisk}[name](params)


class FlakyParams(Params):
    """Raise after fail_after training batches."""
    fail_after: int = Field(20, description="Training batches before it raises.")


@hookimpl
def make_loss(name, params):
    import torch

    calls = []

    def flaky_loss(output, target):
        calls.append(torch.is_grad_enabled())
        if sum(calls) > params.fail_after:
            raise ArithmeticError("flaky loss")
        return torch.nn.functional.binary_cross_entropy_with_logits(output, target)

    return flaky_loss


@hookimpl
def make_dataset(name, params):
    import torch
    from torch.utils.data import TensorDataset

    generator = torch.Generator().manual_seed(0)
    radius = torch.where(torch.arange(params.n) % 2 == 0, 5.0, 8.0) + torch.randn(params.n, generator=generator)
    angle = 6.2832 * torch.rand(params.n, generator=generator)
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    x[::params.every] = float("nan")
    return TensorDataset(x, (torch.arange(params.n) % 2 == 0).float().unsqueeze(1))
'''


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: injected faults during training (signals, kills, full disk, "
                                       "closed streams, nan weights, failing plugins)")


@pytest.fixture
def faults_plugin(installed_plugins, tmp_path):
    """Install torchtk-faults; returns the PYTHONPATH a ``tk`` subprocess needs to see it."""
    installed_plugins("torchtk-faults", {"faults": "torchtk_fake_faults"}, {"torchtk_fake_faults": FAULTS_PLUGIN})
    return os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])


def tk_process(args, pythonpath=None, **options):
    """``tk ARGS`` as its own process (``python -m torchtk``), with this checkout first on its path."""
    env = dict(os.environ, PYTHONPATH=pythonpath or os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("TORCHTK_STRICT_PLUGINS", None)
    return subprocess.Popen([sys.executable, "-m", "torchtk", *map(str, args)], env=env, **options)


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (Linux: ``SigCgt`` in /proc): Python does not by
    default, so it tells that ``tk`` has installed its handlers."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) & (1 << (15 - 1)))


def temporaries(directory: Path) -> list[str]:
    """torchtk's temporary files (``.<name>.<12 hex>.tmp``) under ``directory``."""
    import re

    pattern = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
    return sorted(p.name for p in directory.rglob("*") if pattern.fullmatch(p.name))
