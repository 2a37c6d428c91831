"""``tk runs``: what the run directories under a folder say about their runs.

Only the files a run writes are read (``train.log``, ``spec.json``, ``metrics.json``,
``history.csv``); nothing here imports torch, so listing a hundred runs is instant.

How a run ended is the last line of its last session in ``train.log`` (a session is a
``start:`` line and what follows it; ``--resume`` appends one): ``done`` (finished, or
stopped early when ``stopped early at epoch N`` came before it), ``interrupted. ...``
or ``failed: ...`` / ``failed in epoch N: ...``. A session with none of these is still running, or its process was
killed (SIGKILL, out of memory, power loss) and will never write one: the ``start:``
line names the process (``pid 4242 on host gpu-1``), and on that host a process that is
gone, a zombie, or a newer process that reuses the id, makes the run ``killed``. A run
on another host, or one written before the start line named its process, is
``unknown``: nothing on this machine can tell.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from torchtk.core.errors import UserInputError

DEFAULT_OUTPUT_DIR = "runs"  # TrainerSpec.output_dir's default (a test keeps them equal)
SORT_KEYS = ("start", "best", "name", "duration")
PID_REUSE_SLACK_S = 5.0  # a process that started this long after the run's last line is another process

_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)")
_START = re.compile(r"start: epochs (\d+)\.\.(\d+),.*?(?:, pid (\d+) on host (\S+))?$")


@dataclass
class Session:
    """One ``tk train`` (or ``--resume``) process's part of ``train.log``."""

    start: datetime
    first_epoch: int
    last_epoch: int
    pid: int | None = None
    host: str | None = None
    last: datetime | None = None  # its last line (the end line when it ended)
    outcome: str | None = None  # finished, stopped early, interrupted, failed; None: no end line written
    message: str | None = None  # the end line: "failed: ...", "interrupted. ..."
    stopped: bool = False

    @property
    def seconds(self) -> float:
        return ((self.last or self.start) - self.start).total_seconds()


def log_lines(text: str) -> Iterator[tuple[datetime, str]]:
    """``(time, message)`` per line of ``train.log``; a message of several lines (a
    failure naming several spec problems) is joined back into one."""
    pending: list[Any] | None = None
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match is None:
            if pending is not None:
                pending[1] += "\n" + line
            continue
        if pending is not None:
            yield pending[0], pending[1]
        pending = [datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S"), match[2]]
    if pending is not None:
        yield pending[0], pending[1]


def sessions(text: str) -> list[Session]:
    """The sessions of a ``train.log``. Lines after a session's end line and before the
    next ``start:`` (a ``--resume`` refused before it started, such as one with another
    spec) belong to no session: they change neither the run's status nor its duration."""
    found: list[Session] = []
    for when, message in log_lines(text):
        start = _START.match(message)
        if start is not None:
            pid = int(start[3]) if start[3] else None
            found.append(Session(when, int(start[1]), int(start[2]), pid, start[4], last=when))
            continue
        if not found or found[-1].outcome is not None:
            continue
        session = found[-1]
        session.last = when
        if message.startswith("stopped early at epoch "):
            session.stopped = True
        elif message == "done":
            session.outcome = "stopped early" if session.stopped else "finished"
        elif message.startswith("this run already stopped early"):  # a resume with nothing left to do
            session.outcome, session.message = "stopped early", message
        elif message.startswith("interrupted."):
            session.outcome, session.message = "interrupted", message
        elif message.startswith(("failed: ", "failed in epoch ")):  # the engine's two failure lines
            session.outcome, session.message = "failed", message
    return found


def _linux_process(pid: int) -> tuple[str, float] | None:
    """``(state letter, start time as a Unix time)`` of a process, from ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, StopIteration, ValueError):
        return None


def process_state(pid: int | None, host: str | None, last_line: datetime) -> str:
    """``running``, ``killed`` or ``unknown`` for a session that wrote no end line."""
    if pid is None or host != socket.gethostname() or os.name == "nt":  # os.kill(pid, 0) ends a process there
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "killed"
    except PermissionError:
        pass  # alive, someone else's
    except OSError:
        return "unknown"
    linux = _linux_process(pid)
    if linux is not None:
        state, started = linux
        if state in ("Z", "X") or started > last_line.timestamp() + PID_REUSE_SLACK_S:
            return "killed"  # a zombie, or the id now belongs to a process started after the run's last line
    return "running"


@dataclass
class RunRecord:
    """What a run directory's files say about its run."""

    path: Path
    name: str
    status: str
    sessions: list[Session] = field(default_factory=list)
    epochs_run: int = 0
    epochs: int | None = None  # the last session's planned last epoch
    monitor: str | None = None
    mode: str | None = None
    best: float | None = None
    best_epoch: int | None = None
    spec: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None

    @property
    def start(self) -> datetime | None:
        return self.sessions[0].start if self.sessions else None

    @property
    def duration_s(self) -> float | None:
        """The sum of the sessions (the time between them is not counted); a running
        session counts up to now."""
        if not self.sessions:
            return None
        total = sum(s.seconds for s in self.sessions)
        if self.status == "running":
            last = self.sessions[-1]
            total += max(0.0, (datetime.now() - (last.last or last.start)).total_seconds())
        return total

    @property
    def message(self) -> str | None:
        return self.sessions[-1].message if self.sessions else None

    def to_json(self) -> dict[str, Any]:
        last = self.sessions[-1] if self.sessions else None
        return {"run_dir": str(self.path), "name": self.name, "status": self.status,
                "start": self.start.isoformat() if self.start else None,
                "end": last.last.isoformat() if last and last.last else None,
                "duration_s": self.duration_s, "sessions": len(self.sessions),
                "epochs_run": self.epochs_run, "epochs": self.epochs,
                "monitor": self.monitor, "mode": self.mode, "best": self.best, "best_epoch": self.best_epoch,
                "pid": last.pid if last else None, "host": last.host if last else None, "message": self.message}


def is_run_dir(path: Path) -> bool:
    """A folder ``tk train`` made: it holds ``train.log`` (the first file a run opens)."""
    return (path / "train.log").is_file()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run directory (see :func:`is_run_dir`); a file it lacks leaves its fields empty."""
    path = Path(path)
    try:
        log = (path / "train.log").read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserInputError(f"{path}: not a run directory (no readable train.log: {exc.strerror or exc})") from None
    found = sessions(log)
    spec, metrics = _read_json(path / "spec.json"), _read_json(path / "metrics.json")
    trainer = (spec or {}).get("trainer") or {}
    record = RunRecord(path, str((spec or {}).get("name") or path.name), _status(found), found,
                       spec=spec, metrics=metrics, epochs=found[-1].last_epoch if found else trainer.get("epochs"),
                       monitor=(metrics or {}).get("monitor", trainer.get("monitor")),
                       mode=(metrics or {}).get("mode", trainer.get("mode")))
    if metrics is not None:
        best = metrics.get("best") or {}
        value = best.get(record.monitor)
        record.best = float(value) if isinstance(value, (int, float)) else None
        record.best_epoch = best.get("epoch") if record.best is not None else None
        record.epochs_run = int(metrics.get("epochs_run") or 0)
    elif (path / "history.csv").is_file():
        record.epochs_run = len(read_history(path))
    return record


def _status(found: list[Session]) -> str:
    if not found:
        return "unknown"
    last = found[-1]
    return last.outcome or process_state(last.pid, last.host, last.last or last.start)


def find_runs(folder: str | os.PathLike[str]) -> list[RunRecord]:
    """Every run directory in ``folder``, at any depth (``runs/sweep-1/rings-...``), or
    ``folder`` itself when it is one. A run directory's own subfolders (checkpoints) are
    not searched; hidden folders are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        raise UserInputError(f"{folder} {what}; give the folder your runs are in "
                             f"(trainer.output_dir, default {DEFAULT_OUTPUT_DIR!r})")
    found = []
    for directory, subdirectories, _ in os.walk(folder):
        if is_run_dir(Path(directory)):
            found.append(read_run(directory))
            subdirectories[:] = []
        else:
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
    if not found:
        raise UserInputError(f"{folder} holds no run directory (a folder with a train.log, as tk train writes "
                             f"under trainer.output_dir)")
    return found


def _sort_key(sort: str) -> Any:
    if sort == "best":  # grouped by monitor, best first in each group (values of two monitors do not compare)
        return lambda r: (r.monitor or "", r.mode or "", r.best if r.mode != "max" else -r.best, str(r.path))
    if sort == "name":
        return lambda r: (r.name, str(r.path))
    if sort == "duration":
        return lambda r: (r.duration_s, str(r.path))
    return lambda r: (r.start, str(r.path))


def _sort_value(record: RunRecord, sort: str) -> Any:
    return {"best": record.best, "duration": record.duration_s, "start": record.start}.get(sort, record.name)


def select_runs(records: list[RunRecord], pattern: str | None = None, sort: str = "start",
                reverse: bool = False) -> list[RunRecord]:
    """The runs whose name or directory name matches the glob ``pattern``, ordered by
    ``sort``: ``start`` (oldest first), ``name``, ``duration`` (shortest first) or
    ``best`` (best first by each run's own mode, grouped by monitor). ``reverse`` flips
    the order; runs without the value sorted on (no best yet) come last either way."""
    if sort not in SORT_KEYS:
        raise UserInputError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    if pattern is not None:
        records = [r for r in records if fnmatch.fnmatch(r.name, pattern) or fnmatch.fnmatch(r.path.name, pattern)]
    present = [r for r in records if _sort_value(r, sort) is not None]
    absent = [r for r in records if _sort_value(r, sort) is None]
    return sorted(present, key=_sort_key(sort), reverse=reverse) + sorted(absent, key=lambda r: str(r.path))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def table_rows(records: list[RunRecord], folder: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of ``tk runs``' table, as text; ``run`` is the directory under ``folder``."""
    rows = []
    for r in records:
        try:
            where = str(r.path.relative_to(folder)) if r.path != Path(folder) else r.path.name
        except ValueError:
            where = str(r.path)
        best = f"{r.monitor} {r.best:.4f} (epoch {r.best_epoch})" if r.best is not None else "-"
        epochs = f"{r.epochs_run}/{r.epochs}" if r.epochs is not None else str(r.epochs_run)
        rows.append({"run": where, "name": r.name, "start": r.start.strftime("%Y-%m-%d %H:%M:%S") if r.start else "-",
                     "status": r.status, "epochs": epochs, "best": best, "duration": format_duration(r.duration_s)})
    return rows


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """``history.csv`` as the run's rows: ``epoch`` an int, every other cell a float; an
    empty cell (a column that joined later, an epoch that did not validate) is left out
    of its row, as the run's own rows have it."""
    path = Path(run_dir) / "history.csv"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.DictReader(handle))
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    rows = []
    for number, line in enumerate(lines, start=2):
        try:
            row: dict[str, float] = {"epoch": int(line.pop("epoch"))}
            row.update({key: float(value) for key, value in line.items()
                        if key is not None and value not in ("", None)})
        except (KeyError, TypeError, ValueError):
            raise UserInputError(f"{path}:{number}: not a history row (an integer epoch, then numbers)") from None
        rows.append(row)
    return rows


def best_of(history: list[dict[str, float]], column: str, mode: str = "min") -> dict[str, float] | None:
    """The first row with the best finite value of ``column`` (an equal later value is
    no improvement, as the engine decides best.pt), or ``None`` when none has one."""
    best = None
    for row in history:
        value = row.get(column)
        if value is None or not math.isfinite(value):
            continue
        if best is None or (value < best[column] if mode == "min" else value > best[column]):
            best = row
    return best
