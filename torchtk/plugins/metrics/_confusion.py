"""The confusion matrix: logs no column, and writes ``confusion_matrix.png`` and
``confusion_matrix.json`` for the best epoch through the optional ``write_best`` method."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
import torchmetrics

from torchtk.core.outputs import atomic_write_bytes
from torchtk.plugins.metrics._inputs import ClassificationInputs
from torchtk.plugins.metrics._torchmetrics import TorchMetric, classification_kwargs, column_names


class ConfusionMatrix(TorchMetric):
    """``compute()`` returns ``{}`` (no column) and keeps the matrix; ``write_best`` draws it."""

    def __init__(self, params: Any, classes: list[str] | None) -> None:
        task = params.task
        kwargs = classification_kwargs("confusion_matrix", params, task)
        normalize = None if params.normalize == "none" else params.normalize
        super().__init__(torchmetrics.ConfusionMatrix(task=task, normalize=normalize, **kwargs),
                         ClassificationInputs("confusion_matrix", params, task, "task" in params.model_fields_set),
                         columns=[])  # logs nothing: the matrix is a file, not a scalar
        self.params = params
        size = 2 if task == "binary" else params.num_classes if task == "multiclass" else params.num_labels
        self.labels = column_names(size, classes)
        self.matrix: list[Any] | None = None

    def compute(self) -> dict[str, float]:
        self.matrix = self.metric.compute().cpu().tolist()
        return {}

    def write_best(self, run_dir: Path, epoch: int, title: str | None = None) -> None:
        """Write the last computed matrix (the best epoch's) as PNG and JSON; ``title``
        (from ``tk evaluate``: what was evaluated) replaces "best epoch N" in the figure."""
        if self.matrix is None:
            return
        data = {"epoch": epoch, "task": self.params.task, "normalize": self.params.normalize,
                "rows": "true class", "columns": "predicted class", "labels": self.labels}
        if title is not None:
            data["title"] = title
        rows = ",\n".join(f"    {json.dumps(row)}" for row in self.matrix)  # one matrix row per line
        text = f'{json.dumps(data, indent=2)[:-2]},\n  "matrix": [\n{rows}\n  ]\n}}\n'
        atomic_write_bytes(run_dir / "confusion_matrix.json", text.encode())
        atomic_write_bytes(run_dir / "confusion_matrix.png", self.figure_png(epoch, title))

    def figure_png(self, epoch: int, title: str | None = None) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        matrices = self.matrix if self.params.task == "multilabel" else [self.matrix]
        panels = self.labels if self.params.task == "multilabel" else [None]
        labels = ["0", "1"] if self.params.task == "multilabel" else self.labels
        size = max(3.5, 0.55 * len(labels) + 2.2)
        figure = Figure(figsize=(size * len(matrices), size), layout="constrained")
        for index, (matrix, panel) in enumerate(zip(matrices, panels)):
            draw(figure.add_subplot(1, len(matrices), index + 1), torch.tensor(matrix, dtype=torch.float64),
                 labels, self.params.normalize != "none", panel)
        figure.suptitle(f"confusion matrix, {title}" if title else f"confusion matrix, best epoch {epoch}",
                        wrap=True)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()


def draw(axes: Any, matrix: torch.Tensor, labels: list[str], normalized: bool, title: str | None) -> None:
    """One matrix: true classes down, predicted across, the value in every cell."""
    axes.imshow(matrix.numpy(), cmap="Blues", vmin=0)
    ticks = list(range(len(labels)))
    axes.set_xticks(ticks, labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right" if max(
        map(len, labels)) > 3 else "center")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    peak = float(matrix.max()) if matrix.numel() else 0.0
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            value = float(matrix[row, col])
            text = f"{value:.2f}" if normalized else f"{int(round(value))}"
            axes.text(col, row, text, ha="center", va="center",
                      color="white" if peak and value > peak / 2 else "black")
