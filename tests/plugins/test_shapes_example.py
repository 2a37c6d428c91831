"""The segmentation example's parts (shapes dataset, unet, iou metric) and the example
itself: `tk train shapes-dice` reaches validation IoU >= 0.8."""

import time

import pytest
import torch

import torchtk


def test_shapes_dataset_is_deterministic_with_masks_under_the_shapes():
    data = torchtk.registry.create("dataset", "shapes", n_samples=64, size=32, seed=3)
    images, masks = data.tensors
    assert images.shape == masks.shape == (64, 1, 32, 32)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert 0.05 < masks.mean() < 0.6 and (masks.flatten(1).sum(1) > 0).all()
    assert images[masks.bool()].mean() > images[~masks.bool()].mean() + 0.3  # shapes are brighter, on average
    again = torchtk.registry.create("dataset", "shapes", n_samples=64, size=32, seed=3)
    assert torch.equal(again.tensors[0], images)


def test_unet_keeps_the_spatial_size_and_explains_a_bad_one():
    net = torchtk.registry.create("model", "unet", in_channels=1, out_channels=3, base_channels=4, depth=2)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(2, 1, 18, 18))


def test_iou_metric_accumulates_over_batches():
    metric = torchtk.registry.create("metric", "iou")
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1  # 8 foreground pixels
    logits = torch.full((1, 1, 4, 4), -5.0)
    logits[..., :3, :] = 5.0  # 12 predicted: 8 right, 4 false positives
    metric.update(logits, target)
    assert metric.compute() == pytest.approx(8 / 12)
    metric.update(torch.full((1, 1, 4, 4), -5.0), torch.zeros(1, 1, 4, 4))  # empty and empty: adds nothing
    assert metric.compute() == pytest.approx(8 / 12)
    metric.reset()
    assert metric.compute() == 1.0
    probabilities = torchtk.registry.create("metric", "iou", from_logits=False, threshold=0.9)
    probabilities.update(torch.sigmoid(logits), target)
    assert probabilities.compute() == pytest.approx(8 / 12)


def test_shapes_dice_example_reaches_iou_0_8(tmp_path):
    """The bundled example, as `tk train shapes-dice` runs it (the slowest test here)."""
    started = time.perf_counter()
    result = torchtk.train("shapes-dice", overrides=[f"trainer.output_dir={tmp_path}", "trainer.progress=false"])
    seconds = time.perf_counter() - started
    assert result.best["val_iou"] >= 0.8, result.history
    assert (result.run_dir / "checkpoints" / "best.pt").exists()
    print(f"shapes-dice: best val_iou {result.best['val_iou']:.3f} in {seconds:.1f} s")
