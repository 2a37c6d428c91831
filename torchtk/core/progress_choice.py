"""Which reporter a run gets: the one decision ``tk train`` and ``torchtk.train`` share.

``progress`` says what the caller asked for; ``"auto"`` shows the rich progress bar and
epoch table where a person watches (a terminal, or a Jupyter notebook, as rich's own
``Console().is_jupyter`` tells) and ``otherwise`` elsewhere: silence for the Python API
(a script's log stays the script's), plain epoch lines for ``tk train`` into a pipe or
a log file. The spec's ``trainer.progress: false`` turns the bar off wherever it would
show: the epoch lines are printed instead (:func:`without_bar`).
"""

from __future__ import annotations

import sys
from typing import Any

from torchtk.core.errors import UserInputError
from torchtk.core.progress import PlainReporter, Reporter, RichReporter

CHOICES = "'auto', True or 'rich', 'plain', False or None, or a torchtk.core.progress.Reporter"


def interactive() -> bool:
    """Whether a person watches the output: stdout is a terminal, or a Jupyter notebook runs us."""
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stdout
        return False
    from rich.console import Console

    return Console().is_jupyter


def choose_reporter(progress: Any = "auto", otherwise: str = "silent") -> Reporter:
    """The reporter for ``progress``: ``"auto"`` (rich where :func:`interactive`, else
    ``otherwise``: ``"silent"`` or ``"plain"``), ``True``/``"rich"``, ``"plain"``,
    ``False``/``None`` (silent), or a :class:`Reporter` instance, used as it is."""
    if isinstance(progress, Reporter):
        return progress
    if progress == "auto":
        progress = "rich" if interactive() else otherwise
    if progress is True or progress == "rich":
        return RichReporter()
    if progress == "plain":
        return PlainReporter()
    if progress is False or progress is None or progress == "silent":
        return Reporter()
    raise UserInputError(f"progress={progress!r}: choose {CHOICES}")


def without_bar(reporter: Reporter, bar: bool) -> Reporter:
    """The reporter a spec with ``trainer.progress: bar`` gets: with ``False``, plain epoch
    lines where the rich bar and table would be; any other reporter as it is."""
    return PlainReporter() if not bar and type(reporter) is RichReporter else reporter
