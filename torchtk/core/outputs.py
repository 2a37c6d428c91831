"""A run's directory: spec.json, train.log, history.csv, metrics.json, checkpoints, curves.png.

Every file that matters after a crash is written atomically (temporary file + rename),
so an interrupted run always keeps its last good checkpoint. Large files (checkpoints,
``curves.png``) are streamed into the temporary file, never held in memory whole.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from torchtk.core.errors import UserInputError

_TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


_TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # what _create_temporary names its files


def _create_temporary(path: Path) -> tuple[Path, BinaryIO]:
    """A new, uniquely named file next to ``path``, open for writing.

    Created with mode 0666 so that the process umask (and a default ACL) applies just
    as it does to ``open()``: the final file gets the mode any other new file would.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, _TEMPORARY_FLAGS, 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, "wb")
    raise FileExistsError(f"no unused temporary name next to {path}")


def remove_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files that writes killed before their rename left in
    ``directory`` (only names :func:`atomic_writer` gives); returns them."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if _TEMPORARY_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


class _CheckedWrites:
    """The temporary file as ``atomic_writer`` hands it out: it remembers the first error a
    ``write`` raised, since ``torch.save`` mostly reports a failed write as its own
    ``RuntimeError`` (``[enforce fail at inline_container.cc] unexpected pos 704 vs 598``),
    which says nothing of the full disk behind it."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], copies: tuple[str | os.PathLike[str], ...] = (),
                  durable: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` atomically through a binary file object: readers see the old file
    or the complete new one, never half of it.

    The data goes to a temporary file in the same directory (so the rename cannot cross
    file systems), which is flushed, fsynced and renamed over ``path`` when the block
    ends, and the directory is fsynced to make the rename durable. If the block raises
    (``KeyboardInterrupt`` included), or any write failed (a full disk), the temporary
    file is removed, ``path`` is left as it was, and the error is an ``OSError`` naming
    ``path`` (``[Errno 28] No space left on device: '.../last.pt'``).

    ``copies``: more paths that get the same bytes from this one write (``last.pt`` and
    ``best.pt`` of an improved epoch): each a copy of the written temporary file (no
    second serialisation), renamed over its path after ``path``; each directory is
    fsynced once. ``durable=False`` skips the fsyncs: still
    atomic for readers and after a killed process, but an OS crash may lose the write
    (for files a resume rewrites: ``history.csv``, ``metrics.json``).

        with atomic_writer(run / "checkpoints" / "last.pt") as handle:
            torch.save(payload, handle)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, handle = _create_temporary(path)
    except OSError as exc:
        raise _naming(exc, path) from exc
    checked = _CheckedWrites(handle)
    others: list[tuple[Path, Path]] = []  # (temporary, final path) of each copy
    try:
        with handle:
            yield checked  # type: ignore[misc]
            if checked.error is not None:
                raise checked.error
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        for copy in map(Path, copies):
            others.append((_copied_temporary(tmp, copy, durable), copy))
        os.replace(tmp, path)
        for other, copy in others:
            os.replace(other, copy)
    except BaseException as exc:
        for leftover in [tmp] + [other for other, _ in others]:
            with contextlib.suppress(OSError):  # an unwritable directory may refuse this too
                leftover.unlink(missing_ok=True)
        error = checked.error or (exc if isinstance(exc, OSError) else None)
        if error is not None and isinstance(exc, Exception):  # not a KeyboardInterrupt
            raise _naming(error, path) from exc
        raise
    if durable:
        for directory in dict.fromkeys(p.parent for p in [path, *(copy for _, copy in others)]):
            _fsync_directory(directory)


def _copied_temporary(source: Path, path: Path, durable: bool) -> Path:
    """A new temporary file next to ``path`` with the bytes of ``source`` (``shutil.copyfile``:
    a copy inside the kernel where the platform has one; fsynced when ``durable``). Not a
    hard link: an in-place write to one file (``torch.save(x, "best.pt")``) must not change
    the other."""
    import shutil

    tmp, handle = _create_temporary(path)
    try:
        handle.close()
        shutil.copyfile(source, tmp)
        if durable:
            _fsync_path(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` naming ``path`` (not its temporary file), as the same ``OSError`` subclass."""
    if error.errno is None or error.filename == str(path):
        return error
    return OSError(error.errno, error.strerror, str(path))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    with atomic_writer(path, durable=durable) as handle:
        handle.write(data)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_files(*paths: Path) -> None:
    """Make files written with ``durable=False`` durable now: each file's data, then each
    directory (its renames), once; files that are gone are skipped."""
    directories = []
    for path in paths:
        with contextlib.suppress(OSError):
            _fsync_path(path)
            directories.append(path.parent)
    for directory in dict.fromkeys(directories):
        _fsync_directory(directory)


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """``<output_dir>/<name>-<timestamp>``, with a numeric suffix if that exists already."""
    base = Path(output_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            if not Path(output_dir).is_dir():
                raise UserInputError(f"trainer.output_dir={str(output_dir)!r} is not a directory") from None
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise UserInputError(f"trainer.output_dir={str(output_dir)!r}: cannot create a run directory there: "
                                 f"{exc.strerror or exc}") from None


class RunDir:
    """Writes a run's outputs; knows nothing about training."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = path / "checkpoints"
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self._log = open(path / "train.log", "a", encoding="utf-8")

    def log(self, message: str) -> None:
        self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        self._log.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a full disk: what could not be flushed is lost, the error was told
            self._log.close()

    def write_spec(self, spec_json: dict[str, Any]) -> None:
        atomic_write_text(self.path / "spec.json", json.dumps(spec_json, indent=2) + "\n")

    def write_history(self, history: list[dict[str, float]], durable: bool = True) -> None:
        columns = merged_columns(history)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        atomic_write_text(self.path / "history.csv", buffer.getvalue(), durable)

    def write_metrics(self, summary: dict[str, Any], durable: bool = True) -> None:
        atomic_write_text(self.path / "metrics.json", json.dumps(_finite(summary), indent=2) + "\n", durable)

    def sync_summary(self) -> None:
        """Make ``history.csv`` and ``metrics.json`` durable (written per epoch without
        fsync: the checkpoint holds the history, and a resume rewrites both)."""
        fsync_files(self.path / "history.csv", self.path / "metrics.json")

    def save_checkpoint(self, payload: dict[str, Any], name: str, *copies: str) -> Path:
        """Write ``checkpoints/<name>`` atomically, streaming ``torch.save`` into it (no
        in-memory copy of the serialised checkpoint); it loads with
        ``torch.load(weights_only=True)`` when ``payload`` holds tensors and plain data.
        ``copies`` (other names, ``best.pt``) get the same file from the same one
        serialisation (see :func:`atomic_writer`)."""
        import torch

        path = self.checkpoints / name
        with atomic_writer(path, copies=tuple(self.checkpoints / copy for copy in copies)) as handle:
            torch.save(payload, handle)
        return path

    def write_curves(self, history: list[dict[str, float]], name: str | None = None, monitor: str | None = None,
                     best_epoch: int | None = None, drawer: Any = None) -> Path | None:
        """Loss, metric and learning-rate curves per epoch in ``curves.png`` (see
        :mod:`torchtk.core.curves`), by ``drawer`` (a ``CurvesDrawer``) when given."""
        if drawer is not None:
            return drawer.draw(self.path / "curves.png", history, name, monitor, best_epoch)
        from torchtk.core.curves import write_curves

        return write_curves(self.path / "curves.png", history, name, monitor, best_epoch)


def merged_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of ``rows``, each placed after the key it follows in its row, so a column
    that appears later (``val_*`` of the first validated epoch, ``lr/<group>`` of a group
    that joined) still sits where a full row has it; its cells before are empty."""
    columns: list[str] = []
    for row in rows:
        previous = None
        for key in row:
            if key not in columns:
                columns.insert(columns.index(previous) + 1 if previous is not None else 0, key)
            previous = key
    return columns


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
