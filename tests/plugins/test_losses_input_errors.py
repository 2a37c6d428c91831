"""Every built-in loss answers inputs it cannot use with a ``LossInputError`` naming the
loss, what it was given (shapes, dtypes) and torch's reason, never with torch's own
``RuntimeError``/``IndexError``/``AttributeError`` (``_inputs.checked``); the fuzz test
``tests/fuzz/test_fuzz_losses.py`` holds this over random shapes and dtypes.
"""

from __future__ import annotations

import copy

import pytest
import torch

import torchtk
from torchtk.plugins.losses._inputs import LossInputError

# torch warns about the mismatched shapes before it fails on them
pytestmark = pytest.mark.filterwarnings("ignore:Using a target size:UserWarning", "ignore:reduction:UserWarning")


def create(name, **params):
    return torchtk.registry.create("loss", name, model=torch.nn.Linear(2, 1), **params)


@pytest.mark.parametrize("name,output,target,expected", [
    ("mse", torch.rand(4, 2), torch.rand(4, 3), "loss 'mse' cannot use output (4, 2) float32 and target (4, 3) "
                                                "float32: The size of tensor a (2) must match"),
    ("mse", torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool), "output (4,) bool and target (4,) bool"),
    ("l1", (torch.rand(3), torch.rand(3)), torch.rand(3), "output a tuple of (3,) float32, (3,) float32"),
    ("cross_entropy", torch.rand(4, 3), torch.tensor([0, 1, 2, 7]), "loss 'cross_entropy' cannot use output (4, 3)"),
    ("bce", torch.rand(4) * 3, torch.rand(4), "loss 'bce' cannot use output (4,) float32"),
    ("kl_div", torch.ones(3, dtype=torch.int64), torch.ones(3), "target (3,) float32"),
    ("focal", (torch.rand(3),), torch.rand(3), "loss 'focal' cannot use output a tuple of (3,) float32"),
    ("dice", (torch.rand(2, 1, 4, 4),), torch.rand(2, 1, 4, 4), "loss 'dice"),
])
def test_torch_errors_become_loss_input_errors_naming_loss_inputs_and_reason(name, output, target, expected):
    with pytest.raises(LossInputError) as raised:
        create(name)(output, target)
    assert expected in str(raised.value)
    assert isinstance(raised.value, ValueError)  # except ValueError keeps working


def test_a_checked_module_keeps_its_class_buffers_and_state_dict():
    weight = torch.tensor([1.0, 2.0, 3.0])
    loss = create("cross_entropy", weight=[1.0, 2.0, 3.0])
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and torch.equal(loss.weight, weight)
    assert list(loss.state_dict()) == ["weight"]
    value = loss(torch.rand(4, 3), torch.tensor([0, 1, 2, 1]))
    assert value.ndim == 0 and torch.isfinite(value)
    assert isinstance(copy.deepcopy(loss), torch.nn.CrossEntropyLoss)


def test_an_empty_batch_is_an_input_error_where_the_loss_would_be_nan():
    with pytest.raises(LossInputError, match="hold no elements"):
        create("mse")(torch.rand(0, 3), torch.rand(0, 3))
    assert create("giou")(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0  # documented: the mean of no boxes is 0


def test_running_out_of_memory_is_not_an_input_error():
    from torchtk.plugins.losses._inputs import call_checked

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name, as call_checked tells it
        pass

    def out_of_memory(output, target):
        raise OutOfMemoryError("CUDA out of memory")

    with pytest.raises(OutOfMemoryError):
        call_checked("mse", out_of_memory, torch.rand(2), torch.rand(2))
    assert issubclass(torch.OutOfMemoryError, RuntimeError) and torch.OutOfMemoryError.__name__ == "OutOfMemoryError"


def test_ciou_is_finite_for_point_boxes_where_torchvision_gives_nan():
    from torchvision import ops

    box, point = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert torch.isnan(ops.complete_box_iou_loss(box, point, reduction="mean"))
    boxes = box.clone().requires_grad_(True)
    value = create("ciou")(boxes, point)
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(boxes.grad).all()
    flat = torch.tensor([[0.0, 0.0, 2.0, 0.0]])  # zero height: pi/2 in both
    torch.testing.assert_close(create("ciou")(box, flat), ops.complete_box_iou_loss(box, flat, reduction="mean"))
