"""Every torch.nn loss is exposed by name, or excluded with a documented reason; each
builds from its derived params and computes what torch computes."""

import re

import pytest
import torch
from torchtk.core.errors import ParamsError
from torch import nn

import torchtk
from torchtk.plugins.losses import torch_nn


def snake_name(class_name):
    """``BCEWithLogitsLoss`` -> ``bce_with_logits`` (DESIGN.md's naming rule)."""
    stem = class_name[: -len("Loss")]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()


def torch_loss_classes():
    """Every public class of torch.nn named like a loss (``*Loss``, and ``NLLLoss2d``)."""
    return sorted(name for name in dir(nn)
                  if "Loss" in name and not name.startswith("_") and isinstance(getattr(nn, name), type))


def test_every_torch_nn_loss_is_exposed_or_excluded_with_a_reason():
    exposed = {cls: name for name, (cls, _summary, _call) in torch_nn.TORCH_LOSSES.items()}
    listed = set(torchtk.registry.names("loss"))
    for class_name in torch_loss_classes():
        if class_name in torch_nn.EXCLUDED:
            assert len(torch_nn.EXCLUDED[class_name]) > 20, f"{class_name}: say why it is excluded"
            continue
        assert class_name in exposed, f"torch.nn.{class_name} is neither exposed nor excluded"
        assert exposed[class_name] == snake_name(class_name)
        assert exposed[class_name] in listed
    assert not set(exposed) & set(torch_nn.EXCLUDED)
    assert set(torch_nn.EXCLUDED) <= set(torch_loss_classes()), "an exclusion for a class torch no longer has"


g = torch.Generator().manual_seed(0)
X, Y = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
LABELS = torch.tensor([0, 2, 1, 2])
SIGNS = torch.tensor([1.0, -1.0, 1.0, -1.0])

# name -> (params, output, target, call on the torch module)
CASES = {
    "bce_with_logits": ({"pos_weight": [1.0, 2.0, 3.0]}, X, torch.rand(4, 3, generator=g), None),
    "bce": ({}, torch.rand(4, 3, generator=g), torch.rand(4, 3, generator=g), None),
    "cross_entropy": ({"weight": [1.0, 2.0, 0.5], "label_smoothing": 0.1}, X, LABELS, None),
    "nll": ({}, X.log_softmax(1), LABELS, None),
    "mse": ({}, X, Y, None),
    "l1": ({"reduction": "sum"}, X, Y, None),
    "smooth_l1": ({"beta": 0.5}, X, Y, None),
    "huber": ({"delta": 0.5}, X, Y, None),
    "kl_div": ({"reduction": "batchmean"}, X.log_softmax(1), Y.softmax(1), None),
    "poisson_nll": ({}, X, Y.abs(), None),
    "hinge_embedding": ({"margin": 0.5}, X, torch.sign(Y), None),
    "soft_margin": ({}, X, torch.sign(Y), None),
    "multi_margin": ({"p": 2}, X, LABELS, None),
    "multi_label_margin": ({}, X, torch.tensor([[0, 1, -1], [2, -1, 0], [1, -1, 0], [0, 1, 2]]), None),
    "multi_label_soft_margin": ({"weight": [1.0, 1.0, 2.0]}, X, (Y > 0).float(), None),
    "gaussian_nll": ({}, (X, Y.abs() + 0.1), Y, lambda m, o, t: m(o[0], t, o[1])),
    "cosine_embedding": ({"margin": 0.2}, (X, Y), SIGNS, lambda m, o, t: m(o[0], o[1], t)),
    "margin_ranking": ({}, (X[:, 0], Y[:, 0]), SIGNS, lambda m, o, t: m(o[0], o[1], t)),
    "triplet_margin": ({"p": 1.0}, (X, Y, -X), None, lambda m, o, t: m(*o)),
    "triplet_margin_with_distance": ({}, (X, Y, -X), None, lambda m, o, t: m(*o)),
    "ctc": ({}, (torch.randn(6, 4, 5, generator=g).log_softmax(2), torch.full((4,), 6)),
            (torch.randint(1, 5, (4, 3), generator=g), torch.full((4,), 3)),
            lambda m, o, t: m(o[0], t[0], o[1], t[1])),
}


def test_the_cases_cover_every_exposed_loss():
    assert set(CASES) == set(torch_nn.TORCH_LOSSES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_torch_loss_computes_what_torch_computes(name):
    params, output, target, call = CASES[name]
    ours = torchtk.registry.create("loss", name, **params)
    torch_kwargs = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in params.items()}
    reference = getattr(nn, torch_nn.TORCH_LOSSES[name][0])(**torch_kwargs)
    expected = call(reference, output, target) if call else reference(output, target)
    torch.testing.assert_close(ours(output, target), expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_torch_loss_shows_its_params_and_description(name):
    shown = torchtk.registry.describe("loss", name)
    assert shown["description"] and ":math:" not in shown["description"]
    assert all(":math:" not in p["description"] for p in shown["params"])
    assert "size_average" not in {p["name"] for p in shown["params"]}


def test_cosine_distance_for_triplets():
    loss = torchtk.registry.create("loss", "triplet_margin_with_distance", distance="cosine", margin=0.5)
    reference = nn.TripletMarginWithDistanceLoss(
        distance_function=lambda a, b: 1 - torch.nn.functional.cosine_similarity(a, b), margin=0.5)
    torch.testing.assert_close(loss((X, Y, -X), None), reference(X, Y, -X))


def test_derived_params_are_validated():
    create = torchtk.registry.create
    for bad in ({"label_smoothing": 1.5}, {"reduction": "avg"}, {"weight": "heavy"}, {"ignore_index": 1.5}):
        with pytest.raises(ParamsError):
            create("loss", "cross_entropy", **bad)
    with pytest.raises(ParamsError):
        create("loss", "multi_margin", p=3)
    with pytest.raises(ParamsError):
        create("loss", "triplet_margin_with_distance", distance="manhattan")


def test_tuple_conventions_explain_a_wrong_output():
    with pytest.raises(ValueError, match=r"'cosine_embedding': the output must be a tuple \(x1, x2\), got a Tensor"):
        torchtk.registry.create("loss", "cosine_embedding")(X, SIGNS)
    with pytest.raises(ValueError, match=r"'ctc': the target must be a tuple \(targets, target_lengths\)"):
        torchtk.registry.create("loss", "ctc")(CASES["ctc"][1], LABELS)
