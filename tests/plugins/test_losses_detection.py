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
