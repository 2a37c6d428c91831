"""Fuzzing every loss of the catalogue (``tk list losses``) on random shapes and dtypes.

Each loss, built with its default params (and ``reduction: sum`` where it has one), is
called as the engine calls it, ``loss(output, target)``, with tensors of 0 to 4
dimensions of size 0 to 5, of every dtype a model or a dataset hands over (float32,
float64, float16, bfloat16, int64, int32, uint8, bool), as a tensor or as the tuples
the tuple-taking losses read, holding values in [0, 1) (floats) or {0, 1, 2}
(integers): the range where every loss is defined, so a wrong result is never the
data's fault.

What each call must end in:

- a **finite scalar**: a 0-dimensional tensor (or a float) holding a finite number; or
- a **clear input error**: a ``torchtk.TorchtkError`` (the built-in losses raise
  ``LossInputError``, also a ``ValueError``) whose message starts with ``loss '<name>``
  (the loss's own name, optionally with its mode: ``loss 'focal (binary)'``) and names
  what it was given: a shape such as ``(4, 3)``, a dtype (``int64``), or the kind of
  object (``tuple``, ``Tensor``). torch's own ``RuntimeError``, ``IndexError``, ``AttributeError`` and the
  like are *not* clear input errors: the built-in losses turn them into
  ``LossInputError`` naming the loss, the shapes and dtypes and torch's reason.

Nothing else: no other exception, no NaN or infinite value, no tensor of another shape.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from hypothesis import given, strategies as st

import torchtk
from torchtk.core.errors import TorchtkError
from tests.fuzz.outcomes import case, examples

pytestmark = pytest.mark.fuzz

LOSSES = sorted(torchtk.registry.names("loss"))
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.bool]
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
# what the loss was given: a shape like (4, 3) or (), a dtype, or the kind of object
SAMPLE = re.compile(r"\(\d*(, \d+)*,?\)|\b(b?float|u?int|complex)\d+\b|\bbool\b|\btuple\b|\blist\b|\bTensor\b")


@st.composite
def tensors(draw, shape=None):
    shape = draw(SHAPES) if shape is None else shape
    dtype = draw(st.sampled_from(DTYPES))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    if dtype.is_floating_point:
        return torch.rand(shape, generator=generator).to(dtype)
    return torch.randint(0, 3, shape, generator=generator).to(dtype)


@st.composite
def inputs(draw):
    """``(output, target)``: often of one shape, sometimes tuples, sometimes anything."""
    output_shape = draw(SHAPES)
    target_shape = draw(st.sampled_from([output_shape, output_shape[:1] + output_shape[2:], output_shape[:-1]])
                        | SHAPES)
    output = draw(st.one_of(tensors(output_shape), st.lists(tensors(output_shape), min_size=2, max_size=3).map(tuple),
                            st.tuples(tensors(output_shape), tensors(output_shape[:1]))))
    target = draw(st.one_of(tensors(target_shape), st.tuples(tensors(target_shape), tensors(target_shape[:1]))))
    return output, target


_MODEL = torch.nn.Linear(2, 1)


def build(name: str, reduction_sum: bool):
    component = torchtk.registry.resolve("loss", name)
    params = {"reduction": "sum"} if reduction_sum and "reduction" in torchtk.registry.params_model(component).model_fields \
        else {}
    return torchtk.registry.create("loss", name, model=_MODEL, **params)


@examples("losses")
@given(st.sampled_from(LOSSES), st.booleans(), inputs())
def test_every_loss_gives_a_finite_scalar_or_a_clear_input_error(name, reduction_sum, given_inputs):
    output, target = given_inputs
    loss = build(name, reduction_sum)
    with case("losses") as outcome, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcasting warnings: the value is what is checked
        try:
            value = loss(output, target)
        except TorchtkError as exc:
            message = str(exc)
            assert message.startswith(f"loss '{name}"), f"the error does not name the loss: {message[:300]!r}"
            assert SAMPLE.search(message), f"the error does not say what it was given: {message[:300]!r}"
            outcome["result"] = "rejected"
            return
        number = value.item() if isinstance(value, torch.Tensor) and value.ndim == 0 else value
        assert isinstance(number, (int, float)), f"{name} returned {type(value).__name__} {getattr(value, 'shape', '')}"
        assert math.isfinite(number), f"{name} returned {number} for finite inputs"
        outcome["result"] = "accepted"
