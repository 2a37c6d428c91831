"""What the user sees while a run trains: a progress bar and one table row per epoch.

The engine calls a reporter only at the logging interval and at epoch ends, never per
batch, so rendering costs nothing on the hot path.

The bar shows samples per second and the whole run's remaining time (:class:`Pace`
says how it is estimated); each epoch's row adds its wall time (``time``, display only:
``history.csv`` stays bit-identical across runs) and marks the best row so far by
``trainer.monitor`` (``best``).

A closed output stream (``tk train ... | head``) never stops a run: the reporter that
meets it goes silent and the process's stdout is pointed at the null device (so the
final flush at exit cannot fail either); the run goes on writing its run directory.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
from typing import Any, Callable


def is_closed_stream(exc: BaseException) -> bool:
    """Whether ``exc`` says the reader of our output has gone: a broken pipe, or EIO from a
    terminal that was closed."""
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EIO))


def discard_stdout() -> None:
    """Point the process's stdout at the null device, so later writes, and Python's flush at
    exit, succeed silently after the reader of a pipe has gone."""
    discard_stream(sys.stdout)


def discard_stream(stream: Any) -> None:
    """Point the file descriptor under ``stream`` (stdout, stderr) at the null device, so
    what its buffer still holds and every later write go nowhere, and none fails."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stream (captured, replaced): nothing to redirect
        pass


class ClosableStream:
    """A text stream whose reader may go: the first write or flush that finds it gone
    points its descriptor at the null device, and every later one (from any thread: rich's
    refresh thread writes too) does nothing. rich's own answer to a broken pipe is
    ``SystemExit(1)``, which would end the run; it never sees one through this."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._went(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._went(exc)

    def _went(self, exc: OSError) -> None:
        if not is_closed_stream(exc):
            raise exc
        self.gone = True
        discard_stream(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


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
    shown after the run directory on the first line: ``run directory: runs/x  (cpu, fp32)``;
    its ``batch_size`` (samples per batch over all processes) sizes the samples per
    second. ``epoch_end``'s ``best`` says the row is the best so far by the monitor.
    The engine passes such details as keywords and may add more: a reporter of your own
    (``torchtk.train(spec, progress=MyReporter())``) takes ``**details`` in ``start`` and
    ``epoch_end`` to keep working.
    """

    def start(self, run_dir: Any, epochs: int, batches: int, first_epoch: int = 1, *, setup: str = "",
              batch_size: int | None = None) -> None: ...
    def epoch_start(self, epoch: int) -> None: ...
    def progress(self, batches_done: int, loss: float) -> None: ...
    def epoch_end(self, row: dict[str, float], *, best: bool = False) -> None: ...
    def message(self, text: str) -> None: ...
    def finish(self) -> None: ...


class Pace:
    """Samples per second and the run's remaining time, from the reporter's calls alone (the
    logging interval and epoch ends: no per-batch work), on an injectable clock.

    The estimate: the rest of this epoch's training batches at this epoch's pace so far,
    plus what the last epoch spent after its training pass (validation, checkpoints), plus
    every epoch still to come at the wall time of the last finished one (before any epoch
    finished: its training batches at this epoch's pace; validation is not known yet).
    Samples per second count ``batch_size`` samples per batch done in this epoch.
    """

    def __init__(self, epochs: int, batches: int, batch_size: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.epochs, self.batches, self.batch_size, self.clock = epochs, batches, batch_size, clock
        self.epoch, self.started, self.train_seconds = 0, None, None
        self.last_epoch: float | None = None  # wall seconds of the last finished epoch
        self.last_tail = 0.0  # of which after its training pass

    def epoch_start(self, epoch: int) -> None:
        self.epoch, self.started, self.train_seconds = epoch, self.clock(), None

    def progress(self, batches_done: int) -> tuple[float | None, float | None]:
        """``(samples per second, seconds left in the run)`` after ``batches_done`` batches
        of the current epoch; ``None`` where not known yet."""
        if self.started is None:
            return None, None
        elapsed = self.clock() - self.started
        if batches_done >= self.batches:
            self.train_seconds = elapsed
        if batches_done <= 0 or elapsed <= 0:
            return None, None
        per_batch = elapsed / batches_done
        speed = batches_done * self.batch_size / elapsed if self.batch_size else None
        rest = max(self.batches - batches_done, 0) * per_batch + self.last_tail
        per_epoch = self.last_epoch if self.last_epoch is not None else self.batches * per_batch
        return speed, rest + max(self.epochs - self.epoch, 0) * per_epoch

    def epoch_end(self) -> float | None:
        """The epoch's wall seconds, from its start to its row; ``None`` if it never started."""
        if self.started is None:
            return None
        seconds = self.clock() - self.started
        trained = self.train_seconds if self.train_seconds is not None else seconds
        self.last_epoch, self.last_tail, self.started = seconds, max(seconds - trained, 0.0), None
        return seconds

    def left(self) -> float | None:
        """Seconds left in the run between epochs: the epochs to come at the last one's length."""
        return None if self.last_epoch is None else max(self.epochs - self.epoch, 0) * self.last_epoch


def clock_time(seconds: float) -> str:
    """``0:01:05``: hours, minutes, seconds (as rich's time columns)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def epoch_time(seconds: float) -> str:
    """An epoch's wall time for its row: ``0.42s``, ``12.3s``, ``4m05s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    return f"{minutes}m{int(seconds % 60):02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def throughput(samples_per_second: float | None) -> str:
    if samples_per_second is None:
        return ""
    return f"{samples_per_second:,.0f} samples/s" if samples_per_second >= 100 else f"{samples_per_second:.3g} samples/s"


BEST = "best"  # the marker of the best row so far by trainer.monitor


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return str(value)


def wrapped_fields(row: dict[str, Any], epochs: Any, width: int, marker: str = "") -> list[str]:
    """An epoch row as ``epoch N/M  name=value ...`` lines no wider than ``width`` (a
    field wider than that gets a line of its own), continuation lines indented; ``marker``
    (``best``) ends the last line."""
    head = f"epoch {row.get('epoch', '?')}/{epochs}"
    fields = [f"{k}={_fmt(v)}" for k, v in row.items() if k != "epoch"] + ([marker] if marker else [])
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

    def __init__(self, stream: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.clock = clock
        self.pace: Pace | None = None

    @_silent_when_closed
    def start(self, run_dir: Any, epochs: int, batches: int, first_epoch: int = 1, *, setup: str = "",
              batch_size: int | None = None) -> None:
        self.epochs = epochs
        self.pace = Pace(epochs, batches, batch_size, self.clock)
        print(f"run directory: {run_dir}" + (f"  ({setup})" if setup else ""), file=self.stream, flush=True)

    def epoch_start(self, epoch: int) -> None:
        if self.pace is not None:
            self.pace.epoch_start(epoch)

    @_silent_when_closed
    def epoch_end(self, row: dict[str, float], *, best: bool = False) -> None:
        """``epoch N/M  name=value ...  time=0.42s  best``."""
        seconds = self.pace.epoch_end() if self.pace is not None else None
        fields = [f"{k}={_fmt(v)}" for k, v in row.items() if k != "epoch"]
        fields += [f"time={epoch_time(seconds)}"] if seconds is not None else []
        fields += [BEST] if best else []
        print(f"epoch {row['epoch']}/{self.epochs}  " + "  ".join(fields), file=self.stream, flush=True)

    @_silent_when_closed
    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _run_eta_column(clock: Callable[[], float]) -> Any:
    """A rich column counting down to the run's predicted end (``eta 0:01:05``): the
    estimate changes only at the reporter's calls, the countdown at every refresh."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RunEta(ProgressColumn):
        def render(self, task: Any) -> Text:
            finish = task.fields.get("finish_at")
            return Text("eta " + ("-:--:--" if finish is None else clock_time(max(finish - clock(), 0.0))))

    return RunEta()


class RichReporter(Reporter):
    """A live progress bar per epoch (loss, samples/s, the run's ETA) and a table row per
    epoch (its wall time, the best row marked), on a terminal."""

    def __init__(self, console: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        if not isinstance(self.console.file, ClosableStream):
            self.console.file = ClosableStream(self.console.file)
        self.clock = clock
        self.progress_bar: Any = None
        self.pace: Pace | None = None
        self.finish_at: float | None = None
        self.columns: list[str] = []

    @_silent_when_closed
    def start(self, run_dir: Any, epochs: int, batches: int, first_epoch: int = 1, *, setup: str = "",
              batch_size: int | None = None) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.epochs, self.batches = epochs, batches
        self.pace = Pace(epochs, batches, batch_size, self.clock)
        suffix = f"  ({escape(setup)})" if setup else ""
        self.console.print(f"run directory: [bold]{escape(str(run_dir))}[/bold]{suffix}")
        self.progress_bar = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(bar_width=30),
            MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
            _run_eta_column(self.clock), console=self.console, transient=True,
        )
        self.progress_bar.start()
        self.task = self.progress_bar.add_task("train", total=batches, epoch=first_epoch, epochs=epochs, loss="-",
                                               speed="", finish_at=None)

    @_silent_when_closed
    def epoch_start(self, epoch: int) -> None:
        if self.pace is not None:
            self.pace.epoch_start(epoch)
        self.progress_bar.reset(self.task, total=self.batches, epoch=epoch, epochs=self.epochs, loss="-",
                                speed="", finish_at=self.finish_at)

    @_silent_when_closed
    def progress(self, batches_done: int, loss: float) -> None:
        speed, left = self.pace.progress(batches_done) if self.pace is not None else (None, None)
        if left is not None:
            self.finish_at = self.clock() + left
        self.progress_bar.update(self.task, completed=batches_done, loss=f"{loss:.4f}", speed=throughput(speed),
                                 finish_at=self.finish_at)

    @_silent_when_closed
    def epoch_end(self, row: dict[str, float], *, best: bool = False) -> None:
        """One table row per epoch (then its ``time`` and the ``best`` marker) while the row
        fits the terminal; a row wider than the terminal is printed wrapped, as
        ``name=value`` fields over several lines, so no column (``val_*``, ``lr``) is ever
        cut off."""
        from rich.table import Table

        seconds = self.pace.epoch_end() if self.pace is not None else None
        if seconds is not None:  # the countdown goes on from the finished epoch's length until the next call
            self.finish_at = self.clock() + self.pace.left()
            self.progress_bar.update(self.task, finish_at=self.finish_at)
        new = [c for c in row if c not in self.columns]
        show_header = bool(new) or not self.columns  # a column that joins later gets the header again
        if new:  # in the row's own order (val_* before lr when validation starts later), then the rest
            self.columns = list(row) + [c for c in self.columns if c not in row]
        headers = self.columns + (["time"] if seconds is not None else []) + [""]
        cells = [_fmt(row.get(c, "")) for c in self.columns]
        cells += ([epoch_time(seconds)] if seconds is not None else []) + [BEST if best else ""]
        widths = [max(len(c), len(v), 8) for c, v in zip(headers[:-1], cells[:-1])] + [len(BEST)]
        console = self.progress_bar.console if self.progress_bar is not None else self.console
        if sum(widths) + 2 * (len(widths) - 1) > console.width:
            self.header_shown = False  # the next row that fits shows its header
            shown = {**row, "time": epoch_time(seconds)} if seconds is not None else row
            for line in wrapped_fields(shown, self.epochs, console.width, BEST if best else ""):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        table = Table(box=None, show_header=show_header or not getattr(self, "header_shown", False), pad_edge=False)
        for column, width in zip(headers, widths):
            table.add_column(column, justify="right" if column else "left", min_width=width, no_wrap=True)
        table.add_row(*cells[:-1], f"[bold green]{cells[-1]}[/]" if best else "")
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
