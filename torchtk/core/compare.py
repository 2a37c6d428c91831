"""``tk compare``: what differs between runs' specs, how each did, and their curves overlaid.

The differences are the spec paths (``optimizer.params.lr``, ``loss[0].name``) where the
runs' ``spec.json`` hold different values; a key one run lacks is absent there (shown at
the shallowest path that is missing: ``callbacks[1]``, not each of its params). The
results are each run's best and last value of its monitored metric and of
``train_loss``/``val_loss``, from ``history.csv``. ``compare.png`` overlays the runs'
curves, one colour per run (train solid, val dashed, as ``curves.png``), with the
drawing rules of :mod:`torchtk.core.curves`. No torch import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchtk.core.curves import column_values, is_lr, wants_log_scale
from torchtk.core.errors import UserInputError
from torchtk.core.outputs import atomic_writer
from torchtk.core.runs import RunRecord, best_of, read_history, read_run

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "absent"})()  # a key this run's spec lacks
LOSSES = ("train_loss", "val_loss")
PANEL_SIZE = (5.0, 4.2)  # inches per panel; compare.png is saved at DPI dots per inch
DPI = 100


def spec_differences(specs: list[Any], prefix: str = "") -> list[tuple[str, list[Any]]]:
    """``(path, values)`` wherever the specs (JSON data) differ, one value per spec
    (``ABSENT`` where a spec lacks the key). Dicts are compared key by key, lists index
    by index (``loss[1]`` is absent in a spec with one loss term); other values, and a
    dict against a list, are compared whole."""
    present = [s for s in specs if s is not ABSENT]
    if all(isinstance(s, dict) for s in present) and len(present) == len(specs):
        keys = list(dict.fromkeys(key for spec in present for key in spec))  # the first spec's order, then new ones
        return [d for key in keys
                for d in spec_differences([s.get(key, ABSENT) for s in specs], f"{prefix}.{key}" if prefix else key)]
    if all(isinstance(s, list) for s in present) and len(present) == len(specs) and any(specs):
        longest = max(len(s) for s in specs)
        return [d for i in range(longest)
                for d in spec_differences([s[i] if i < len(s) else ABSENT for s in specs], f"{prefix}[{i}]")]
    if len({json.dumps(s, sort_keys=True) if s is not ABSENT else "\0absent" for s in specs}) > 1:
        return [(prefix or "(spec)", specs)]
    return []


@dataclass
class ComparedRun:
    """One run of a comparison: its record, the label that names it, spec and history."""

    record: RunRecord
    label: str
    spec: dict[str, Any]
    history: list[dict[str, float]]

    @property
    def monitor(self) -> str:
        return self.record.monitor or "val_loss"

    def quantities(self) -> list[tuple[str, str]]:
        """``(column, mode)`` of what the results show: the monitor, then the losses."""
        found = [(self.monitor, self.record.mode or "min")]
        found += [(loss, "min") for loss in LOSSES if loss != self.monitor and any(loss in r for r in self.history)]
        return found

    def values(self) -> dict[str, dict[str, Any]]:
        """``{column: {best, best_epoch, last, last_epoch}}``; ``last`` is the last epoch that logged it."""
        found = {}
        for column, mode in self.quantities():
            best = best_of(self.history, column, mode)
            last = next((row for row in reversed(self.history) if column in row), None)
            found[column] = {"best": best[column] if best else None, "best_epoch": best["epoch"] if best else None,
                             "last": last[column] if last else None, "last_epoch": last["epoch"] if last else None}
        return found


def _labels(paths: list[Path]) -> list[str]:
    """Directory names, or the paths as given when two runs share a name."""
    names = [p.name or str(p) for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def read_compared(path: str | os.PathLike[str], label: str) -> ComparedRun:
    path = Path(path)
    if not path.is_dir() or not (path / "spec.json").is_file() or not (path / "train.log").is_file():
        what = "does not exist" if not path.exists() else "is not a run directory (no spec.json and train.log)"
        raise UserInputError(f"{path} {what}; give run directories as tk train writes them, "
                             f"such as runs/rings-20261201-164600 (tk runs lists them)")
    record = read_run(path)
    if record.spec is None:
        raise UserInputError(f"{path / 'spec.json'}: not a JSON object; is it a spec.json tk train wrote?")
    history = read_history(path) if (path / "history.csv").is_file() else []
    if not history:
        raise UserInputError(f"{path}: the run has no epochs in history.csv yet (status {record.status}); "
                             f"there is nothing to compare")
    return ComparedRun(record, label, record.spec, history)


@dataclass
class Comparison:
    runs: list[ComparedRun]
    differences: list[tuple[str, list[Any]]]

    def result_rows(self) -> list[tuple[str, list[str]]]:
        """``(label, one cell per run)`` for status, epochs and the best/last values."""
        rows = [("status", [r.record.status for r in self.runs]),
                ("epochs run", [str(r.record.epochs_run or len(r.history)) for r in self.runs])]
        shared = len({r.monitor for r in self.runs}) == 1
        per_run = [r.values() for r in self.runs]
        columns = [self.runs[0].monitor] if shared else ["monitored"]
        columns += [loss for loss in LOSSES if loss not in columns and any(loss in v for v in per_run)]
        for column in columns:
            for which in ("best", "last"):
                cells = []
                for run, values in zip(self.runs, per_run):
                    key = run.monitor if column == "monitored" else column
                    value, epoch = values.get(key, {}).get(which), values.get(key, {}).get(f"{which}_epoch")
                    shown = f"{value:.4g} (epoch {epoch})" if value is not None else "-"
                    cells.append(f"{key} {shown}" if column == "monitored" else shown)
                rows.append((f"{which} {column}", cells))
        return rows

    def difference_rows(self) -> list[tuple[str, list[str]]]:
        """The differing values as table cells, each cut to ``SHOWN_CHARS`` (``--json`` has them whole)."""
        return [(path, [_cut(_shown(v)) for v in values]) for path, values in self.differences]

    def to_json(self) -> dict[str, Any]:
        labels = [r.label for r in self.runs]
        return {"runs": [{"label": r.label, "run_dir": str(r.record.path), "name": r.record.name,
                          "status": r.record.status, "epochs_run": r.record.epochs_run or len(r.history),
                          "monitor": r.monitor, "mode": r.record.mode, "values": r.values()} for r in self.runs],
                "differences": [{"path": path,
                                 "values": {label: v for label, v in zip(labels, values) if v is not ABSENT},
                                 "absent_in": [label for label, v in zip(labels, values) if v is ABSENT]}
                                for path, values in self.differences]}

    def write_png(self, path: str | os.PathLike[str]) -> Path:
        """Draw :func:`compare_figure` into ``path`` atomically."""
        path = Path(path)
        figure = compare_figure(self.runs)
        try:
            with atomic_writer(path) as handle:
                figure.savefig(handle, format="png", dpi=DPI)
        except OSError as exc:
            raise UserInputError(f"--out {path}: cannot write the plot there: {exc.strerror or exc}") from None
        return path


SHOWN_CHARS = 60  # a whole freeze policy as JSON is hundreds of characters: the table shows its start


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "absent"
    return value if isinstance(value, str) else json.dumps(value)


def compare_runs(paths: list[str | os.PathLike[str]]) -> Comparison:
    """Read two or more run directories and find where their specs differ."""
    if len(paths) < 2:
        raise UserInputError(f"tk compare needs two or more run directories, got {len(paths)}"
                             + (f" ({paths[0]})" if paths else ""))
    resolved = [Path(p).resolve() for p in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise UserInputError(f"{paths[i]}: given twice; name each run directory once")
    runs = [read_compared(path, label) for path, label in zip(paths, _labels([Path(p) for p in paths]))]
    return Comparison(runs, spec_differences([r.spec for r in runs]))


def panels(runs: list[ComparedRun]) -> list[tuple[str, str]]:
    """``(kind, title)`` of compare.png's panels: losses, the monitored metric when it
    is no loss, the learning rate when the runs log one."""
    shown = [("loss", "loss")] if any(loss in row for r in runs for row in r.history for loss in LOSSES) else []
    metrics = {r.monitor for r in runs} - set(LOSSES)  # a monitored loss is drawn in the loss panel
    if metrics:
        shown.append(("monitor", metrics.pop() if len(metrics) == 1 else "monitored value"))
    if any(is_lr(key) for r in runs for row in r.history for key in row):
        shown.append(("lr", "learning rate"))
    return shown or [("loss", "loss")]


def _colours(count: int) -> list[Any]:
    import matplotlib

    if count <= 10:
        return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][:count] or ["C0"]
    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i % 20) for i in range(count)]


def _draw(ax: Any, kind: str, run: ComparedRun, colour: Any, group_styles: dict[str, str]) -> list[float]:
    """Draw one run's curves of a panel; returns the values drawn (for the lr axis's scale)."""
    epochs = [row["epoch"] for row in run.history]
    if kind == "loss":
        columns = [loss for loss in LOSSES if any(loss in row for row in run.history)]
    elif kind == "monitor":
        columns = [run.monitor] if run.monitor not in LOSSES else []
    else:
        columns = sorted({key for row in run.history for key in row if is_lr(key)})
    drawn = []
    for column in columns:
        values = column_values(run.history, column)
        style = group_styles.setdefault(column, ["-", "--", ":", "-."][len(group_styles) % 4]) if kind == "lr" \
            else ("--" if column.startswith("val_") else "-")
        ax.plot(epochs, values, color=colour, linestyle=style, marker=".", markersize=4,
                label=f"{run.label} {column}", gid=f"{run.label}:{column}")
        drawn += values
    if kind == "monitor" and columns:
        best = best_of(run.history, run.monitor, run.record.mode or "min")
        if best is not None:
            ax.plot([best["epoch"]], [best[run.monitor]], marker="*", markersize=11, color=colour, linestyle="none")
    return drawn


def compare_figure(runs: list[ComparedRun]) -> Any:
    """The figure of compare.png: one panel per :func:`panels` entry, one colour per run,
    the runs named in a legend above the panels; a star marks each run's best epoch."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    shown = panels(runs)
    colours = _colours(len(runs))
    figure = Figure(figsize=(PANEL_SIZE[0] * len(shown), PANEL_SIZE[1]), layout="constrained")
    axes = figure.subplots(1, len(shown), squeeze=False)[0]
    group_styles: dict[str, str] = {}
    for ax, (kind, title) in zip(axes, shown):
        drawn = [v for run, colour in zip(runs, colours) for v in _draw(ax, kind, run, colour, group_styles)]
        if kind == "lr" and wants_log_scale(drawn):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if kind == "loss":
            ax.legend([Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle="--")],
                      ["train", "val"], fontsize=7, handlelength=3.5)
        elif kind == "monitor":
            ax.legend([Line2D([], [], color="0.3", marker="*", markersize=9, linestyle="none")], ["best epoch"],
                      fontsize=7)
        elif kind == "lr" and len(group_styles) > 1:
            ax.legend([Line2D([], [], color="0.3", linestyle=s) for s in group_styles.values()],
                      list(group_styles), fontsize=7, handlelength=3.5)
    figure.legend([Line2D([], [], color=c, linewidth=2.5) for c in colours], [r.label for r in runs],
                  loc="outside upper center", ncols=min(len(runs), 4), fontsize=8, frameon=False)
    return figure
