"""A run's directory: spec.json, train.log, history.csv, metrics.json, checkpoints, curves.

Every file that matters after a crash is written atomically (temporary file + rename),
so an interrupted run always keeps its last good checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from torchtk.core.errors import UserInputError


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (mkstemp would give 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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
        self._log.close()

    def write_spec(self, spec_json: dict[str, Any]) -> None:
        atomic_write_text(self.path / "spec.json", json.dumps(spec_json, indent=2) + "\n")

    def write_history(self, history: list[dict[str, float]]) -> None:
        columns: list[str] = []
        for row in history:
            columns += [key for key in row if key not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        atomic_write_text(self.path / "history.csv", buffer.getvalue())

    def write_metrics(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / "metrics.json", json.dumps(_finite(summary), indent=2) + "\n")

    def save_checkpoint(self, payload: dict[str, Any], name: str) -> Path:
        import torch

        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = self.checkpoints / name
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def write_curves(self, history: list[dict[str, float]]) -> Path | None:
        """Loss, metric and learning-rate curves per epoch in ``curves.png``."""
        if not history:
            return None
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        epochs = [row["epoch"] for row in history]
        keys = [k for k in history[-1] if k != "epoch"]
        panels = [
            ("loss", [k for k in keys if "loss" in k]),
            ("metrics", [k for k in keys if k.startswith("val_") and "loss" not in k]),
            ("learning rate", [k for k in keys if k == "lr" or k.startswith("lr/")]),
        ]
        panels = [(title, ks) for title, ks in panels if ks]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        for ax, (title, ks) in zip(axes[0], panels):
            for key in ks:
                ax.plot(epochs, [row.get(key, math.nan) for row in history], marker=".", label=key)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = self.path / "curves.png"
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())
        return path


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
