"""Box losses: box_iou (union and min) against torchvision.ops.box_iou, giou/diou/ciou
against torchvision.ops and their formulas."""

import pytest
import torch
from torchvision import ops

import torchtk


def create(name, **params):
    return torchtk.registry.create("loss", name, **params)


def random_boxes(n, generator):
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 10
    size = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 5 + 0.5
    return torch.cat([corner, corner + size], dim=1)


@pytest.fixture
def boxes():
    g = torch.Generator().manual_seed(0)
    return random_boxes(16, g), random_boxes(16, g)


def test_box_iou_is_one_minus_the_diagonal_of_torchvision_box_iou(boxes):
    a, b = boxes
    expected = (1 - ops.box_iou(a, b).diagonal()).mean()
    torch.testing.assert_close(create("box_iou", eps=1e-12)(a, b), expected)
    torch.testing.assert_close(create("box_iou", eps=1e-12, reduction="sum")(a, b), expected * 16)


def test_box_iou_min_divides_by_the_smaller_area():
    inner = torch.tensor([[2.0, 2.0, 4.0, 4.0]])
    outer = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert create("box_iou", mode="min")(inner, outer).item() == pytest.approx(0.0)  # contained: overlap 1
    assert create("box_iou")(inner, outer).item() == pytest.approx(1 - 4 / 100)
    half = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 5.0, 2.0]])
    assert create("box_iou", mode="min")(*half).item() == pytest.approx(1 - 2 / 4)


@pytest.mark.parametrize("name,function", [("giou", ops.generalized_box_iou_loss),
                                           ("diou", ops.distance_box_iou_loss),
                                           ("ciou", ops.complete_box_iou_loss)])
def test_giou_diou_ciou_equal_torchvision(boxes, name, function):
    a, b = boxes
    torch.testing.assert_close(create(name)(a, b), function(a, b, reduction="mean", eps=1e-7))


def test_giou_matches_its_formula_for_disjoint_boxes():
    a, b = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    enclosing = 3.0 * 1.0
    assert create("giou")(a, b).item() == pytest.approx(1 - 0 + (enclosing - 2.0) / enclosing)


def test_box_losses_have_gradients_and_gradcheck(boxes):
    a, b = boxes
    a = a.clone().requires_grad_(True)
    for mode in ("union", "min"):
        assert torch.autograd.gradcheck(lambda x: create("box_iou", mode=mode)(x, b), (a,))
    for name in ("giou", "diou", "ciou"):
        create(name)(a, b).backward()
    assert torch.isfinite(a.grad).all()


def test_box_shape_errors_name_the_loss_and_shapes():
    with pytest.raises(ValueError, match=r"'giou'.*\(3, 4\).*\(2, 4\)"):
        create("giou")(torch.rand(3, 4), torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"'box_iou'.*\(3, 5\)"):
        create("box_iou")(torch.rand(3, 5), torch.rand(3, 5))


BOX_LOSSES = ["box_iou", "giou", "diou", "ciou"]


def test_box_iou_on_float16_pixel_boxes_is_computed_in_float32_like_torchvision():
    a = torch.tensor([[0.0, 0.0, 300.0, 300.0], [10.0, 10.0, 410.0, 330.0]], dtype=torch.float16)
    b = torch.tensor([[20.0, 20.0, 320.0, 320.0], [10.0, 10.0, 400.0, 330.0]], dtype=torch.float16)
    assert torch.isinf((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).all()  # the area overflows float16
    expected = (1 - ops.box_iou(a, b).diagonal()).mean()  # torchvision upcasts to float32
    value = create("box_iou", eps=1e-12)(a, b)
    assert torch.isfinite(value) and value.dtype == torch.float32
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_empty_batch_of_boxes_gives_zero_not_nan_like_torchvision(name):
    a = torch.zeros(0, 4, requires_grad=True)
    for reduction in ("mean", "sum"):
        value = create(name, reduction=reduction)(a, torch.zeros(0, 4))
        assert value.item() == 0.0
    value.backward()
    assert create(name, reduction="none")(a, torch.zeros(0, 4)).shape == (0,)
    torch.testing.assert_close(ops.generalized_box_iou_loss(a, torch.zeros(0, 4), reduction="mean"),
                               torch.tensor(0.0))  # the torchvision behaviour this copies


@pytest.mark.parametrize("name,function", [("box_iou", None), ("giou", ops.generalized_box_iou_loss),
                                           ("diou", ops.distance_box_iou_loss),
                                           ("ciou", ops.complete_box_iou_loss)])
def test_reduction_none_gives_one_loss_per_box(boxes, name, function):
    a, b = boxes
    per_box = create(name, reduction="none", eps=1e-12)(a, b)
    assert per_box.shape == (16,)
    expected = 1 - ops.box_iou(a, b).diagonal() if function is None else function(a, b, eps=1e-12)
    torch.testing.assert_close(per_box, expected)
    torch.testing.assert_close(per_box.mean(), create(name, eps=1e-12)(a, b))
    assert create(name, reduction="none")(a.reshape(2, 8, 4), b.reshape(2, 8, 4)).shape == (2, 8)


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_box_losses_under_float16_autocast_on_cpu(boxes, name):
    a, b = (x.float() * 40 for x in boxes)  # up to 600 px: float16 areas would overflow
    a.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.float16):
        value = create(name)(a.half(), b.half())
    value.float().backward()
    assert torch.isfinite(value) and torch.isfinite(a.grad).all()
    torch.testing.assert_close(value.float(), create(name)(a, b).float(), atol=2e-3, rtol=2e-2)
