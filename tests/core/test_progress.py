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
