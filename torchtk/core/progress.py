"""What the user sees while a run trains: a progress bar and one table row per epoch.

The engine calls a reporter only at the logging interval and at epoch ends, never per
batch, so rendering costs nothing on the hot path.

A closed output stream (``tk train ... | head``) never stops a run: the reporter that
meets it goes silent and the process's stdout is pointed at the null device (so the
final flush at exit cannot fail either); the run goes on writing its run directory.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from typing import Any, Callable


def is_closed_stream(exc: BaseException) -> bool:
    """Whether ``exc`` says the reader of our output has gone (a broken pipe)."""
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)


def discard_stdout() -> None:
    """Point the process's stdout at the null device, so later writes, and Python's flush at
    exit, succeed silently after the reader of a pipe has gone."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured, replaced): nothing to redirect
        pass


def _silent_when_closed(method: Callable[..., Any]) -> Callable[..., Any]:
    """A reporter method that does nothing once its stream is closed, and closes it on EPIPE."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "closed", False):
            return None
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            if not is_closed_stream(exc):
                raise
            self.closed = True
            discard_stdout()
            return None

    return guarded


class Reporter:
    """Silent reporter (Python API, ``--json``); subclasses render.

    ``start``'s ``setup`` is what the run trains on, ``"cpu, fp32"`` (device, precision),
    shown after the run directory on the first line: ``run directory: runs/x  (cpu, fp32)``.
    """

    def start(self, run_dir: Any, epochs: int, batches: int, first_epoch: int = 1, setup: str = "") -> None: ...
    def epoch_start(self, epoch: int) -> None: ...
    def progress(self, batches_done: int, loss: float) -> None: ...
    def epoch_end(self, row: dict[str, float]) -> None: ...
    def message(self, text: str) -> None: ...
    def finish(self) -> None: ...


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return str(value)


def wrapped_fields(row: dict[str, Any], epochs: Any, width: int) -> list[str]:
    """An epoch row as ``epoch N/M  name=value ...`` lines no wider than ``width`` (a
    field wider than that gets a line of its own), continuation lines indented."""
    head = f"epoch {row.get('epoch', '?')}/{epochs}"
    fields = [f"{k}={_fmt(v)}" for k, v in row.items() if k != "epoch"]
    indent = " " * (len(head) + 2)
    lines, line = [], head
    for field_text in fields:
        if len(line) + 2 + len(field_text) > width and line.strip():
            lines.append(line)
            line = indent + field_text
        else:
            line = f"{line}  {field_text}"
    lines.append(line)
    return lines


class PlainReporter(Reporter):
    """One line per epoch, for logs and pipes."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    @_silent_when_closed
    def start(self, run_dir: Any, epochs: int, batches: int, first_epoch: int = 1, setup: str = "") -> None:
        self.epochs = epochs
        print(f"run directory: {run_dir}" + (f"  ({setup})" if setup else ""), file=self.stream, flush=True)

    @_silent_when_closed
    def epoch_end(self, row: dict[str, float]) -> None:
        fields = "  ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "epoch")
        print(f"epoch {row['epoch']}/{self.epochs}  {fields}", file=self.stream, flush=True)

    @_silent_when_closed
    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichReporter(Reporter):
    """A live progress bar per epoch and a table row per epoch, on a terminal."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.progress_bar: Any = None
        self.columns: list[str] = []

    @_silent_when_closed
    def start(self, run_dir: Any, epochs: int, batches: int, first_epoch: int = 1, setup: str = "") -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.epochs, self.batches = epochs, batches
        suffix = f"  ({escape(setup)})" if setup else ""
        self.console.print(f"run directory: [bold]{escape(str(run_dir))}[/bold]{suffix}")
        self.progress_bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=self.console, transient=True,
        )
        self.progress_bar.start()
        self.task = self.progress_bar.add_task("train", total=batches, epoch=first_epoch, epochs=epochs, loss="-")

    @_silent_when_closed
    def epoch_start(self, epoch: int) -> None:
        self.progress_bar.reset(self.task, total=self.batches, epoch=epoch, epochs=self.epochs, loss="-")

    @_silent_when_closed
    def progress(self, batches_done: int, loss: float) -> None:
        self.progress_bar.update(self.task, completed=batches_done, loss=f"{loss:.4f}")

    @_silent_when_closed
    def epoch_end(self, row: dict[str, float]) -> None:
        """One table row per epoch while the row fits the terminal; a row wider than the
        terminal is printed wrapped, as ``name=value`` fields over several lines, so no
        column (``val_*``, ``lr``) is ever cut off."""
        from rich.table import Table

        new = [c for c in row if c not in self.columns]
        show_header = bool(new) or not self.columns  # a column that joins later gets the header again
        self.columns += new
        cells = [_fmt(row.get(c, "")) for c in self.columns]
        widths = [max(len(c), len(v), 8) for c, v in zip(self.columns, cells)]
        console = self.progress_bar.console if self.progress_bar is not None else self.console
        if sum(widths) + 2 * (len(widths) - 1) > console.width:
            self.header_shown = False  # the next row that fits shows its header
            for line in wrapped_fields(row, self.epochs, console.width):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        table = Table(box=None, show_header=show_header or not getattr(self, "header_shown", False), pad_edge=False)
        for column, width in zip(self.columns, widths):
            table.add_column(column, justify="right", min_width=width, no_wrap=True)
        table.add_row(*cells)
        self.header_shown = True
        console.print(table)

    @_silent_when_closed
    def message(self, text: str) -> None:
        self.console.print(text, markup=False)

    def finish(self) -> None:
        if self.progress_bar is not None:  # stopped even on a closed stream: it ends the refresh thread
            try:
                self.progress_bar.stop()
            except OSError as exc:
                if not is_closed_stream(exc):
                    raise
                discard_stdout()
