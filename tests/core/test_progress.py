"""The terminal reporters: closed streams, and epoch tables that never drop columns."""

from __future__ import annotations

import errno
import io

import pytest

from torchtk.core.progress import PlainReporter, RichReporter


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


def _rich(width: int):
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    reporter = RichReporter(console)
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


def test_plain_reporter_writes_every_column():
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.start("runs/x", 3, 10)
    reporter.epoch_end(WIDE_ROW)
    assert all(f"{name}=" in stream.getvalue() for name in WIDE_ROW if name != "epoch")
