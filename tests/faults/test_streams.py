"""Closed output streams (``tk train ... | head -1``, ``2>&-``, a terminal that goes away):
training goes on, exit 0, and the run directory is complete."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import threading

import pytest
import torch

import torchtk
from torchtk.core.progress import RichReporter
from tests.faults.conftest import temporaries, tk_process

pytestmark = pytest.mark.faults

EPOCHS = 4


def assert_complete(runs):
    (run,) = runs.iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "curves.png", "history.csv", "metrics.json",
                                                     "spec.json", "train.log"]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == EPOCHS
    assert len((run / "history.csv").read_text().splitlines()) == EPOCHS + 1
    assert (run / "train.log").read_text().rstrip().endswith(" done")
    for name in ("last.pt", "best.pt"):
        torch.load(run / "checkpoints" / name, weights_only=True)
    assert temporaries(run) == []


@pytest.fixture
def spec(spec_file, small_spec):
    small_spec["trainer"]["epochs"] = EPOCHS
    return spec_file(small_spec)


def test_stdout_closed_by_its_reader_after_the_first_line(spec, tmp_path):
    """``tk train spec | head -1``: the epoch lines after the first meet a closed pipe."""
    process = tk_process(["train", spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"run directory: ")
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert stderr == ""
    assert_complete(tmp_path / "runs")


def test_stderr_closed_with_a_warning_to_write_and_stdout_closed_too(spec, tmp_path, monkeypatch):
    """Found: a warning printed to a closed stderr (here: TORCHTK_DISABLE_PLUGINS naming no
    plugin) raised BrokenPipeError in the middle of loading plugins: exit 1, no run."""
    monkeypatch.setenv("TORCHTK_DISABLE_PLUGINS", "no_such_plugin")
    process = tk_process(["train", spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stderr.close()
    process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=300) == 0
    assert_complete(tmp_path / "runs")


def test_no_stdout_and_no_stderr_at_all(spec, tmp_path):
    """``tk train spec >&- 2>&-``: Python starts with ``sys.stdout`` and ``sys.stderr`` None."""
    def close_both():
        os.close(1)
        os.close(2)

    process = tk_process(["train", spec], preexec_fn=close_both)
    assert process.wait(timeout=300) == 0
    assert_complete(tmp_path / "runs")


def test_a_terminal_closed_after_the_first_table_row(spec, tmp_path):
    """On a terminal tk draws the rich progress bar and the epoch table; once the terminal
    is gone its writes fail with EIO (a closed pipe gives EPIPE, and rich's own answer to
    that is SystemExit(1)); the run goes on silently."""
    import pty

    master, terminal = pty.openpty()
    process = tk_process(["train", spec], stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    seen = b""
    while b"train_loss" not in seen:  # the table's header, printed with the first row
        chunk = os.read(master, 4096)
        assert chunk, seen
        seen += chunk
    os.close(master)
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr
    assert_complete(tmp_path / "runs")


def test_the_rich_bar_and_table_on_a_pipe_whose_reader_goes(small_spec, tmp_path):
    """In-process, rich forced onto a pipe: its refresh thread and the table rows meet the
    closed pipe; the run completes and nothing is raised (rich would raise SystemExit(1))."""
    from rich.console import Console

    read_end, write_end = os.pipe()
    writer = io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True)

    def read_a_little_and_go():
        os.read(read_end, 64)
        os.close(read_end)

    reader = threading.Thread(target=read_a_little_and_go)
    reader.start()
    spec = copy.deepcopy(small_spec)
    spec["trainer"].update(epochs=EPOCHS, log_every_n_steps=1)
    result = torchtk.train(spec, progress=RichReporter(Console(file=writer, force_terminal=True, width=100)))
    reader.join()
    assert len(result.history) == EPOCHS
    assert_complete(tmp_path / "runs")
    writer.close()
