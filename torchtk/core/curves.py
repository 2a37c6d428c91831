"""``curves.png``: a run's history per epoch, drawn so that it reads at a glance.

One panel per kind of column: losses (``train_loss``, ``val_loss`` and their terms
``train_loss/<term>``), metrics (``val_<metric>``, ``train_<metric>``), other columns
(``grad_norm``), and the learning rate (``lr`` or ``lr/<group>``). Train and val of one
quantity share a colour (train solid, val dashed); the monitor's best epoch is a dotted
vertical line on every panel; the title names the run. The lr panel is drawn on a log
scale when the lr spans more than a decade (non-positive values are not drawn there), and
not at all when every group's lr is constant: the title says the value instead.

:func:`curves_figure` returns the matplotlib ``Figure`` (tests inspect its axes);
:func:`write_curves` saves it atomically. matplotlib is imported only when drawing, and
only its object API is used (no pyplot): a notebook's backend and figures are left alone.

Importing matplotlib takes about as long as drawing (0.45 s of CPU against 0.4 s here), so
``tk train`` (one run per process) hands the drawing to a :class:`CurvesDrawer`: a helper process
(``python -m torchtk.core.curves``) started when training starts, which imports matplotlib
on another core while the run trains and keeps it out of the run's memory; at the end it
gets the history on its stdin and writes ``curves.png``, and the run waits for it.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from torchtk.core.outputs import atomic_writer

DECADE = 10.0  # an lr whose largest value is more than this times its smallest gets a log axis


def is_lr(key: str) -> bool:
    return key == "lr" or key.startswith("lr/")


def quantity(key: str) -> str:
    """What a column measures, without its split: ``val_loss/dice`` -> ``loss/dice``."""
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def panels(keys: list[str]) -> list[tuple[str, list[str]]]:
    """``(title, columns)`` per panel, empty panels left out."""
    losses = [k for k in keys if quantity(k).split("/")[0] == "loss" and k != quantity(k)]
    metrics = [k for k in keys if k not in losses and k != quantity(k) and not is_lr(k)]
    lrs = [k for k in keys if is_lr(k)]
    other = [k for k in keys if k not in losses + metrics + lrs]
    found = [("loss", losses), ("metrics", metrics), ("other", other), ("learning rate", lrs)]
    return [(title, columns) for title, columns in found if columns]


def wants_log_scale(values: list[float]) -> bool:
    """Whether the positive ones of ``values`` span more than a decade (zeros do not count:
    a log axis cannot show them)."""
    positive = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    if not positive:
        return False
    return max(positive) > DECADE * min(positive)


def column_values(history: list[dict[str, Any]], key: str) -> list[float]:
    """One value per row of ``history`` (NaN where the row lacks ``key``: matplotlib leaves a gap)."""
    return [float(row[key]) if isinstance(row.get(key), (int, float)) else math.nan for row in history]


def constant_lrs(history: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[float, int]] | None:
    """``{column: (value, first epoch)}`` when every lr column holds one value all run (a
    group that joins later: from the epoch it joined), else ``None``."""
    found = {}
    for key in keys:
        values = [(v, row["epoch"]) for v, row in zip(column_values(history, key), history) if math.isfinite(v)]
        if len({v for v, _ in values}) > 1:
            return None
        found[key] = values[0] if values else (math.nan, history[0]["epoch"])
    return found


def _title(name: str | None, best: tuple[str, int, float] | None,
           constant: dict[str, tuple[float, int]] | None, first_epoch: int) -> str:
    parts = [name or "run"]
    if best is not None:
        parts.append(f"best {best[0]} {best[2]:.4g} at epoch {best[1]}")
    if constant:
        lrs = [(f"{key.removeprefix('lr/')} {value:.3g}" if key != "lr" else f"{value:.3g}")
               + (f" from epoch {epoch}" if epoch > first_epoch else "") for key, (value, epoch) in constant.items()]
        parts.append(f"lr constant: {', '.join(lrs)}" if len(constant) > 1 else f"lr {lrs[0]} (constant)")
    return "  |  ".join(parts)


def curves_figure(history: list[dict[str, Any]], name: str | None = None, monitor: str | None = None,
                  best_epoch: int | None = None) -> Any:
    """The figure of ``curves.png`` for ``history`` (one row per epoch)."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k != "epoch" and k not in keys]
    shown = panels(keys)
    constant = constant_lrs(history, [k for k in keys if is_lr(k)])
    if constant is not None:
        shown = [(title, columns) for title, columns in shown if title != "learning rate"]
    shown = shown or [("loss", [])]
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    hues: dict[str, str] = {}
    fig = Figure(figsize=(5 * len(shown), 3.9))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    best_row = next((row for row in history if row["epoch"] == best_epoch), None)
    for ax, (title, columns) in zip(axes, shown):
        for key in columns:
            colour = hues.setdefault(quantity(key), colours[len(hues) % len(colours)])
            ax.plot(epochs, column_values(history, key), marker=".", label=key, color=colour,
                    linestyle="--" if key.startswith("val_") else "-")
        if title == "learning rate" and wants_log_scale([v for k in columns for v in column_values(history, k)]):
            ax.set_yscale("log")
        if best_row is not None:
            ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1.2, label=f"best epoch {best_epoch}",
                       gid="best-epoch")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if columns:
            ax.legend(fontsize=7, handlelength=3.5)
    best = (monitor, best_epoch, float(best_row[monitor])) if best_row is not None and monitor in best_row else None
    fig.suptitle(_title(name, best, constant, epochs[0]), fontsize=10, wrap=True)
    fig.tight_layout()
    return fig


def write_curves(path: Path, history: list[dict[str, Any]], name: str | None = None, monitor: str | None = None,
                 best_epoch: int | None = None) -> Path | None:
    """Draw ``history`` into ``path`` (a PNG), atomically; nothing for an empty history."""
    if not history:
        return None
    fig = curves_figure(history, name, monitor, best_epoch)
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=100)
    return path


HELPER_PROCESS = False  # set by the tk console script (one run per process); torchtk.train() in a
# long-lived process (a notebook, a test session) draws in it: after the first run matplotlib is loaded there


class CurvesDrawer:
    """Draws ``curves.png`` at the end of a run, in a helper process where that is cheaper.

    :meth:`start` starts the helper where :data:`HELPER_PROCESS` is on (``tk train``) and
    matplotlib is not imported in this process already (drawing here then costs less than
    a new import there), unless it cannot start; :meth:`draw` then hands it the history and waits, or draws in this
    process when there is no helper or the helper failed (so any error is the one drawing
    here raises). :meth:`close` ends a helper that will draw nothing (an interrupted run);
    a helper whose run died (SIGKILL) reads an empty stdin and exits without writing.
    """

    TIMEOUT = 300  # seconds a helper may take to draw before the run draws the curves itself

    def __init__(self, process: subprocess.Popen[bytes] | None = None) -> None:
        self.process = process

    @classmethod
    def start(cls) -> CurvesDrawer:
        if not HELPER_PROCESS or "matplotlib.figure" in sys.modules:
            return cls()
        try:
            process = subprocess.Popen([sys.executable, "-m", "torchtk.core.curves"], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, ValueError):  # no interpreter to start (an embedded Python): draw here at the end
            return cls()
        return cls(process)

    def draw(self, path: Path, history: list[dict[str, Any]], name: str | None = None, monitor: str | None = None,
             best_epoch: int | None = None) -> Path | None:
        process, self.process = self.process, None
        if process is not None and history:
            job = {"path": str(path), "history": history, "name": name, "monitor": monitor, "best_epoch": best_epoch}
            try:
                process.communicate(json.dumps(job).encode("utf-8"), timeout=self.TIMEOUT)
                if process.returncode == 0:
                    return path
            except (OSError, TypeError, ValueError, subprocess.TimeoutExpired):  # TypeError: not JSON data
                _end(process)
        elif process is not None:
            _end(process)
        return write_curves(path, history, name, monitor, best_epoch)

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _end(process)


def _end(process: subprocess.Popen[bytes]) -> None:
    """End a helper that has no job (or failed one) and reap it: it has written nothing, as it
    writes only the job it was handed, atomically."""
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()


def _serve() -> int:
    """The helper: import matplotlib now, then draw the job that arrives on stdin (exit 0),
    or exit 1 without writing anything when stdin closes empty or drawing fails."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: it ends this helper
    from matplotlib.backends import backend_agg  # noqa: F401 -- the import this process takes off the run's path
    from matplotlib.figure import Figure  # noqa: F401

    data = sys.stdin.buffer.read()
    if not data:
        return 1
    job = json.loads(data)
    try:
        write_curves(Path(job["path"]), job["history"], job["name"], job["monitor"], job["best_epoch"])
    except Exception:  # the run draws again in its own process, where the error is reported
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
