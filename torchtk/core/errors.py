"""The errors torchtk raises on purpose, and the exit code each one means."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

ECHO_LIMIT = 200  # characters of an offending value (or name) that a message repeats
MESSAGE_LIMIT = 2_000  # characters of one problem's message
PROBLEMS_SHOWN = 20  # problems an invalid spec's message lists (all are in SpecError.problems)


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text``, or its first ``limit`` characters and ``... (N characters)``: a message
    repeats what the user wrote, never all of a value that may be megabytes long."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


class TorchtkError(Exception):
    """Base class: a message meant for the user, shown without a traceback."""

    exit_code = 1


class UserInputError(TorchtkError):
    """Bad input (file, spec, name, CLI usage): exit code 2."""

    exit_code = 2


class SpecError(UserInputError):
    """An invalid run spec; ``problems`` are ``(spec_path, message)`` pairs.

    ``positions``, parallel to ``problems``, holds the ``(line, column)`` in the file
    ``source`` where each problem is, or ``None`` (a dict, a ``--set``, a default).
    """

    heading = "invalid spec"

    def __init__(self, problems: list[tuple[str, str]], source: str = "spec",
                 positions: list[tuple[int, int] | None] | None = None) -> None:
        self.problems = problems
        self.source = source
        self.positions = list(positions) if positions is not None else [None] * len(problems)
        many = len(problems) > 1
        source = shorten(source, MESSAGE_LIMIT)  # the message is bounded, whatever its parts hold
        lines = [f"{source}: {self.heading}"] if many else []
        for (path, message), position in zip(problems[:PROBLEMS_SHOWN], self.positions):
            path, message = shorten(path, MESSAGE_LIMIT), shorten(message, MESSAGE_LIMIT)
            where = f"{path}: " if path else ""
            if position is not None:
                prefix = f"{source}:{position[0]}:{position[1]}: "
            else:
                prefix = "" if many else f"{source}: "
            lines.append(f"{'  ' if many else ''}{prefix}{where}{message}")
        if len(problems) > PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(problems) - PROBLEMS_SHOWN:,} more problems")
        super().__init__("\n".join(lines))


class ParamsError(SpecError, ValueError):
    """Invalid params given to ``registry.create``, worded as the CLI words a spec's
    (``loss 'focal': gamma: Input should be greater than or equal to 0 (got -1.0)``);
    ``problems`` are ``(param path, message)`` pairs. It is a ``ValueError`` too, as
    pydantic's ``ValidationError`` it replaces was, so ``except ValueError`` still works."""

    heading = "invalid params"


class UnknownComponentError(UserInputError):
    """A name no plugin provides."""


class AmbiguousComponentError(UserInputError):
    """A name two plugins provide, with no explicit choice between them."""


class BrokenPluginError(TorchtkError):
    """A component whose plugin failed to load; the original error is chained."""

    exit_code = 2


class RunFailed(TorchtkError):
    """Training failed (NaN loss, an exception inside a plugin): exit code 1."""


class RunInterrupted(TorchtkError):
    """Ctrl-C or SIGTERM: the last good checkpoint is kept (exit code 130)."""

    exit_code = 130


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C (a ``KeyboardInterrupt``), so both keep the last good
    checkpoint. The one SIGTERM handler of torchtk: ``tk`` installs it for the whole
    command, ``torchtk.train`` for the run; outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
