"""The errors torchtk raises on purpose, and the exit code each one means."""

from __future__ import annotations

import os
import signal
import sys
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


BUILD_INTERRUPTED = "interrupted while building the run; nothing was written"


class _Signals:
    """What torchtk's signal handler has seen since the outermost ``interrupt_signals``."""

    received = 0  # signals since the handlers were installed
    depth = 0  # nested installations (tk, then torchtk.train inside it)


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM arrived while torchtk's handler was installed. The
    ``KeyboardInterrupt`` it raised can be lost (C code that clears errors, such as
    torch's NumPy initialisation during ``import torch``), so the run checks this too."""
    return _Signals.received > 0


def raise_if_interrupted() -> None:
    """Raise the ``KeyboardInterrupt`` of a signal whose own one was lost (see :func:`interrupted`)."""
    if _Signals.received:
        raise KeyboardInterrupt


def _on_signal(signum: int, frame: Any) -> None:
    _Signals.received += 1
    if _Signals.received == 1:
        raise KeyboardInterrupt
    # a second signal while the first is handled: leave now, without a traceback; every
    # file torchtk writes is atomic, so the last good checkpoint is kept
    try:
        os.write(2, b"interrupted again: exiting now\n")
    except OSError:
        pass
    os._exit(130)


@contextmanager
def interrupt_signals(*signums: int) -> Iterator[None]:
    """Turn ``signums`` (SIGINT, SIGTERM) into a ``KeyboardInterrupt`` at the first signal,
    remembered by :func:`interrupted`, and into exit code 130 at once at the second.
    Nested use keeps the outer installation; outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_signal) for signum in signums}
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if _Signals.depth == 0:  # what this installation saw is over (the next run starts afresh)
            _Signals.received = 0


def sigterm_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C (a ``KeyboardInterrupt``), so both keep the last good
    checkpoint: what ``torchtk.train`` installs for its run. ``tk`` installs the same
    handler for SIGINT and SIGTERM when it starts (:func:`interrupt_signals`)."""
    return interrupt_signals(signal.SIGTERM)


def console_main() -> None:
    """The ``tk`` console script (and ``python -m torchtk``): the signal handlers are
    installed before the command line parser, torch or any plugin is imported, so that a
    signal at any moment after Python started is an interrupt (exit code 130)."""
    with interrupt_signals(signal.SIGINT, signal.SIGTERM):
        try:
            from torchtk.core.cli import main
        except KeyboardInterrupt:
            try:
                os.write(2, (interrupted_message(sys.argv[1:]) + "\n").encode())
            except OSError:
                pass
            os._exit(130)
        main()


def interrupted_message(argv: list[str], trained: bool = False) -> str:
    """What tk says to an interrupt it met outside a run: for ``tk train`` before its run
    returned (``trained``), that nothing was written, since the engine had not started it."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    return f"error: {BUILD_INTERRUPTED}" if command == "train" and not trained else "interrupted"
