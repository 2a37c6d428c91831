"""The terminal reporters: closed streams, epoch tables that never drop columns, samples per
second and the run's ETA, the time column and the best row's marker."""

from __future__ import annotations

import errno
import io
import math

import pytest

from typing import Any

from torchtk.core.progress import PlainReporter, Pace, Reporter, RichReporter, clock_time, epoch_time, throughput, wrapped_fields


class ClosedPipe(io.StringIO):
    def __init__(self, exc: OSError) -> None:
        super().__init__()
        self.exc, self.writes = exc, 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise self.exc


@pytest.mark.parametrize("exc", [BrokenPipeError(errno.EPIPE, "Broken pipe"), OSError(errno.EPIPE, "Broken pipe")])
def test_plain_reporter_goes_silent_on_a_closed_stream(exc):
    stream = ClosedPipe(exc)
    reporter = PlainReporter(stream)
    reporter.start("runs/x", 3, 10)
    reporter.epoch_end({"epoch": 1, "train_loss": 0.5})
    reporter.message("done")
    reporter.finish()
    assert reporter.closed and stream.writes == 1  # nothing written after the first failure


def test_plain_reporter_other_os_errors_still_raise():
    reporter = PlainReporter(ClosedPipe(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        reporter.start("runs/x", 3, 10)


WIDE_ROW = {"epoch": 1, "train_loss": 0.51234, "train_focal": 0.3012, "train_dice": 0.1502,
            "train_l2_regularization": 0.00012, "val_loss": 0.4821, "val_focal": 0.2811, "val_dice": 0.1401,
            "val_l2_regularization": 0.00012, "val_accuracy": 0.9123, "val_f1": 0.8844,
            "lr/backbone": 0.0001, "lr/head": 0.001}


def _rich(width: int, clock=None):
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    reporter = RichReporter(console, clock=clock) if clock is not None else RichReporter(console)
    reporter.epochs = 3
    return reporter, console


@pytest.mark.parametrize("width", [60, 100, 160])
def test_wide_epoch_row_renders_every_column(width):
    reporter, console = _rich(width)
    for epoch in (1, 2):
        reporter.epoch_end({**WIDE_ROW, "epoch": epoch})
    text = console.export_text()
    for name, value in WIDE_ROW.items():
        if name != "epoch":
            assert text.count(name) >= 1, (name, text)
            assert text.count(f"{value:.4f}" if value >= 1e-3 else f"{value:.4g}") >= 2, (name, text)
    assert all(len(line) <= width for line in text.splitlines()), text


def test_narrow_row_stays_a_table_with_one_header():
    reporter, console = _rich(100)
    for epoch in (1, 2, 3):
        reporter.epoch_end({"epoch": epoch, "train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9, "lr": 0.01})
    lines = console.export_text().splitlines()
    assert len(lines) == 4 and lines[0].split() == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr"]
    assert lines[3].split() == ["3", "0.5000", "0.4000", "0.9000", "0.0100"]


def test_a_column_that_joins_later_is_shown():
    reporter, console = _rich(100)
    reporter.epoch_end({"epoch": 1, "train_loss": 0.5, "lr/default": 0.01})
    reporter.epoch_end({"epoch": 2, "train_loss": 0.4, "lr/default": 0.01, "lr/layer4": 0.001})
    text = console.export_text()
    assert "lr/layer4" in text and "0.0010" in text


def test_validation_columns_that_join_later_come_before_lr():
    """With val_every_n_epochs the first rows have no val_*: when they come, the table
    takes the row's own order (val_* before lr), as history.csv does."""
    reporter, console = _rich(100)
    reporter.epoch_end({"epoch": 1, "train_loss": 0.5, "lr": 0.01})
    reporter.epoch_end({"epoch": 2, "train_loss": 0.4, "val_loss": 0.3, "val_accuracy": 0.9, "lr": 0.01})
    reporter.epoch_end({"epoch": 3, "train_loss": 0.35, "lr": 0.01})
    lines = console.export_text().splitlines()
    assert lines[2].split() == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr"]
    assert lines[3].split() == ["2", "0.4000", "0.3000", "0.9000", "0.0100"]
    assert lines[4].split() == ["3", "0.3500", "0.0100"]  # no val_* that epoch: blank cells


def test_plain_reporter_writes_every_column():
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.start("runs/x", 3, 10)
    reporter.epoch_end(WIDE_ROW)
    assert all(f"{name}=" in stream.getvalue() for name in WIDE_ROW if name != "epoch")


# -- samples per second, the run's ETA, the time column and the best marker ---------------------------------


class FakeClock:
    """A clock the test moves by hand: no sleeping, exact numbers."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def test_pace_estimates_samples_per_second_and_the_whole_runs_remaining_time():
    clock = FakeClock()
    pace = Pace(epochs=5, batches=50, batch_size=100, clock=clock)
    pace.epoch_start(1)
    clock.tick(2.0)
    speed, left = pace.progress(20)  # 20 batches in 2 s: 0.1 s a batch, 1000 samples/s
    assert speed == pytest.approx(1000.0)
    assert left == pytest.approx(30 * 0.1 + 4 * 50 * 0.1)  # the rest of epoch 1, then 4 epochs at that pace
    clock.tick(3.0)
    assert pace.progress(50) == (pytest.approx(1000.0), pytest.approx(4 * 5.0))  # training pass done after 5 s
    clock.tick(1.0)  # validation and checkpoints
    assert pace.epoch_end() == pytest.approx(6.0)
    assert pace.left() == pytest.approx(4 * 6.0)  # between epochs: 4 more as long as this one
    pace.epoch_start(2)
    clock.tick(1.0)
    speed, left = pace.progress(20)  # faster now: 0.05 s a batch
    assert speed == pytest.approx(2000.0)
    # the rest of epoch 2 at its own pace, plus the 1 s the last epoch spent after training,
    # plus 3 epochs as long as the last finished one (6 s)
    assert left == pytest.approx(30 * 0.05 + 1.0 + 3 * 6.0)


def test_pace_of_a_resumed_run_counts_only_the_epochs_left():
    clock = FakeClock()
    pace = Pace(epochs=10, batches=10, batch_size=None, clock=clock)
    pace.epoch_start(9)
    clock.tick(1.0)
    speed, left = pace.progress(10)
    assert speed is None and left == pytest.approx(1.0)  # no batch size: no samples/s; one epoch (10) to go
    assert Pace(3, 10).epoch_end() is None and Pace(3, 10).progress(5) == (None, None)  # never started


def test_time_and_speed_formats():
    assert [epoch_time(s) for s in (0.4213, 12.34, 245.0, 3725.0)] == ["0.42s", "12.3s", "4m05s", "1h02m"]
    assert clock_time(65.4) == "0:01:05" and clock_time(3725) == "1:02:05"
    assert throughput(12345.6) == "12,346 samples/s" and throughput(42.123) == "42.1 samples/s" and throughput(None) == ""


def _bar_text(reporter, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(reporter.progress_bar.make_tasks_table(reporter.progress_bar.tasks))
    return console.export_text()


def test_progress_bar_shows_samples_per_second_and_a_countdown_to_the_runs_end():
    clock = FakeClock()
    reporter, console = _rich(100, clock)
    reporter.start("runs/x", 3, 50, batch_size=100)
    try:
        assert "eta -:--:--" in _bar_text(reporter, 100)  # nothing known before the first logging interval
        reporter.epoch_start(1)
        clock.tick(2.0)
        reporter.progress(20, 0.5)  # 0.1 s a batch: 3 s left in epoch 1, then 2 x 5 s
        bar = _bar_text(reporter, 100)
        assert "epoch 1/3" in bar and "20/50" in bar and "loss 0.5000" in bar
        assert "1,000 samples/s" in bar and "eta 0:00:13" in bar
        clock.tick(4.0)  # the refresh thread counts down between the reporter's calls
        assert "eta 0:00:09" in _bar_text(reporter, 100)
        clock.tick(1.0)
        reporter.epoch_end({"epoch": 1, "train_loss": 0.5})  # epoch 1 took 7 s: 2 more of those
        assert "eta 0:00:14" in _bar_text(reporter, 100)
    finally:
        reporter.finish()


def _epochs(reporter, clock, rows, best):
    for row, is_best in zip(rows, best):
        reporter.epoch_start(row["epoch"])
        clock.tick(0.25 * row["epoch"])
        reporter.epoch_end(row, best=is_best)


ROWS = [{"epoch": e, "train_loss": 0.5 / e, "val_loss": 0.4 / e, "val_accuracy": a, "lr": 0.01}
        for e, a in ((1, 0.8), (2, 0.9), (3, 0.85))]


@pytest.mark.parametrize("width", [100, 160])
def test_rich_table_has_a_time_column_and_marks_the_best_row(width):
    clock = FakeClock()
    reporter, console = _rich(width, clock)
    reporter.start("runs/x", 3, 10, batch_size=32)
    _epochs(reporter, clock, ROWS, [True, True, False])
    reporter.finish()
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert lines[1].split() == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "time"]
    assert lines[2].split() == ["1", "0.5000", "0.4000", "0.8000", "0.0100", "0.25s", "best"]
    assert lines[3].split() == ["2", "0.2500", "0.2000", "0.9000", "0.0100", "0.50s", "best"]
    assert lines[4].split() == ["3", "0.1667", "0.1333", "0.8500", "0.0100", "0.75s"]
    assert all(len(line) <= width for line in lines)


def test_the_time_column_stays_out_of_the_row_the_engine_keeps():
    clock = FakeClock()
    reporter, _ = _rich(100, clock)
    reporter.start("runs/x", 3, 10)
    row = dict(ROWS[0])
    _epochs(reporter, clock, [row], [True])
    reporter.finish()
    assert row == ROWS[0]  # history.csv gets the row as it was: no time, no marker


@pytest.mark.parametrize("width", [100, 160])
def test_wide_row_with_time_and_marker_renders_every_column(width):
    clock = FakeClock()
    reporter, console = _rich(width, clock)
    reporter.start("runs/x", 3, 10)
    _epochs(reporter, clock, [{**WIDE_ROW, "epoch": 1}, {**WIDE_ROW, "epoch": 2}], [True, False])
    reporter.finish()
    text = console.export_text()
    for name in WIDE_ROW:
        assert name in text, (name, text)
    assert "time=0.25s" in text and "time=0.50s" in text and text.count("best") == 1
    assert all(len(line) <= width for line in text.splitlines()), text


def test_plain_reporter_shows_time_and_best():
    clock = FakeClock()
    stream = io.StringIO()
    reporter = PlainReporter(stream, clock=clock)
    reporter.start("runs/x", 3, 10, batch_size=32)
    _epochs(reporter, clock, ROWS, [True, True, False])
    lines = stream.getvalue().splitlines()
    assert lines[1] == "epoch 1/3  train_loss=0.5000  val_loss=0.4000  val_accuracy=0.8000  lr=0.0100  time=0.25s  best"
    assert lines[2].endswith("time=0.50s  best") and lines[3].endswith("lr=0.0100  time=0.75s")


def test_wrapped_fields_end_with_the_marker():
    lines = wrapped_fields({"epoch": 2, "train_loss": 0.5, "val_loss": 0.25}, 3, 32, marker="best")
    assert lines == ["epoch 2/3  train_loss=0.5000", "           val_loss=0.2500  best"]


class Recorder(Reporter):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, run_dir, epochs, batches, first_epoch=1, *, batch_size=None, **others):
        self.calls.append(("start", (epochs, batches, first_epoch, batch_size)))

    def progress(self, batches_done, loss):
        self.calls.append(("progress", batches_done))

    def epoch_end(self, row, *, best=False):
        self.calls.append(("epoch_end", (row["epoch"], best)))


def test_the_engine_passes_the_batch_size_and_the_best_row_and_calls_only_at_intervals(small_spec, monkeypatch):
    import torchtk
    from torchtk.core import curves

    drawn = {}
    monkeypatch.setattr(curves, "write_curves", lambda path, history, *args: drawn.update(args=args))
    spec = {**small_spec, "trainer": {**small_spec["trainer"], "epochs": 4, "log_every_n_steps": 5,
                                      "monitor": "val_loss", "mode": "min"}}
    recorder = Recorder()
    result = torchtk.train(spec, reporter=recorder)
    assert recorder.calls[0] == ("start", (4, 12, 1, 50))  # 600 training samples in batches of 50
    assert [c[1] for c in recorder.calls if c[0] == "progress"] == [5, 10, 12] * 4  # never per batch
    losses = [row["val_loss"] for row in result.history]
    marked = [best for name, (_, best) in (c for c in recorder.calls if c[0] == "epoch_end")]
    assert marked == [v < min(losses[:i], default=math.inf) for i, v in enumerate(losses)]
    assert drawn["args"] == ("rings-small", "val_loss", result.best["epoch"])
