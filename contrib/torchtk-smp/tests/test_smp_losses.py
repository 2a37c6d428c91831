"""smp's Lovász and MCC losses; torchtk's soft_bce and cross_entropy equal smp's soft losses."""

from __future__ import annotations

import pytest
import torch

from torchtk.core.registry import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry()


def _binary(seed=0):
    torch.manual_seed(seed)
    return torch.randn(2, 1, 8, 8, requires_grad=True), (torch.rand(2, 1, 8, 8) > 0.5).float()


def test_lovasz_hinge_is_smps(registry):
    from segmentation_models_pytorch.losses import LovaszLoss

    logits, target = _binary()
    ours = registry.create("loss", "lovasz_hinge", per_image=True)(logits, target)
    assert torch.allclose(ours, LovaszLoss("binary", per_image=True)(logits, target))
    ours.backward()
    assert logits.grad is not None and torch.isfinite(ours)


def test_lovasz_softmax_is_smps_with_ignore_index(registry):
    from segmentation_models_pytorch.losses import LovaszLoss

    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    target[0, 0] = 255
    ours = registry.create("loss", "lovasz_softmax", ignore_index=255)(logits, target)
    assert torch.allclose(ours, LovaszLoss("multiclass", ignore_index=255)(logits, target))


def test_mcc_on_logits_and_on_probabilities(registry):
    from segmentation_models_pytorch.losses import MCCLoss

    logits, target = _binary(2)
    want = MCCLoss()(logits.sigmoid(), target)
    assert torch.allclose(registry.create("loss", "mcc")(logits, target), want)
    assert torch.allclose(registry.create("loss", "mcc", from_logits=False)(logits.sigmoid(), target), want)
    perfect = registry.create("loss", "mcc", from_logits=False)(target, target)
    assert perfect.item() == pytest.approx(0.0, abs=1e-4)


def test_torchtk_builtins_already_are_smps_soft_bce_and_soft_ce(registry):
    """Why this plugin does not repeat SoftBCEWithLogitsLoss and SoftCrossEntropyLoss."""
    from segmentation_models_pytorch.losses import SoftBCEWithLogitsLoss, SoftCrossEntropyLoss

    logits, target = _binary(3)
    ours = registry.create("loss", "soft_bce", label_smoothing=0.1)(logits, target)
    assert torch.allclose(ours, SoftBCEWithLogitsLoss(smooth_factor=0.1)(logits, target))
    torch.manual_seed(4)
    class_logits, classes = torch.randn(16, 5), torch.randint(0, 5, (16,))
    ours = registry.create("loss", "cross_entropy", label_smoothing=0.1)(class_logits, classes)
    assert torch.allclose(ours, SoftCrossEntropyLoss(smooth_factor=0.1)(class_logits, classes))
