"""The contrib plugin, tested as a plugin author would: installed, conforming, correct."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

torchmetrics = pytest.importorskip("torchmetrics")

import torchtk  # noqa: E402
import torchtk_torchmetrics  # noqa: E402
from torchtk.testing import check_plugin, registry_with  # noqa: E402


def test_is_installed_through_the_entry_point():
    registry = torchtk.registry
    component = registry.resolve("metric", "f1")
    assert (component.plugin, component.distribution) == ("torchmetrics", "torchtk-torchmetrics")
    assert component.version == "0.1.0"


def test_conforms():
    registry = registry_with(torchtk_torchmetrics)
    assert check_plugin(registry, "torchtk_torchmetrics") == []


def test_listing_imports_neither_torch_nor_torchmetrics():
    code = ("import sys\nfrom torchtk.core.cli import main\n"
            "try:\n    main(['list', 'metrics'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'torchmetrics') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_binary_f1_on_logits_matches_torchmetrics_functional():
    metric = torchtk.registry.create("metric", "f1")
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    target = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0]])
    metric.update(logits[:3], target[:3])
    metric.update(logits[3:], target[3:])
    expected = torchmetrics.functional.f1_score(torch.sigmoid(logits).reshape(-1), target.reshape(-1).long(),
                                                task="binary")
    assert metric.compute() == pytest.approx(float(expected))
    metric.reset()
    metric.update(logits, 1 - target)
    assert metric.compute() != pytest.approx(float(expected))


def test_multiclass_auroc_needs_num_classes_and_matches():
    with pytest.raises(ValueError, match="needs num_classes"):
        torchtk.registry.create("metric", "auroc", task="multiclass")
    metric = torchtk.registry.create("metric", "auroc", task="multiclass", num_classes=3)
    logits = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    target = torch.arange(20) % 3
    metric.update(logits, target)
    expected = torchmetrics.functional.auroc(logits.softmax(1), target, task="multiclass", num_classes=3)
    assert metric.compute() == pytest.approx(float(expected), abs=1e-6)


def test_a_run_logs_the_metric(tmp_path):
    spec = torchtk.load_spec("rings", overrides=['metrics=["accuracy", "f1", "matthews_corrcoef"]',
                                                 "trainer.epochs=2", f"trainer.output_dir={tmp_path}"])
    result = torchtk.train(spec)
    assert 0 <= result.last["val_f1"] <= 1 and -1 <= result.last["val_matthews_corrcoef"] <= 1
