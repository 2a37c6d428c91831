"""focal, batch_focal and sce: the tutorial's values, parity with torchvision and with
formulas written out here, gradients, extreme logits and shape errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

import torchtk
from torchtk.core.errors import ParamsError


def create(name, **params):
    return torchtk.registry.create("loss", name, **params)


# -- focal, binary ---------------------------------------------------------------------------

def test_focal_reproduces_the_tutorial_values():
    focal = create("focal", from_logits=False, alpha=0.75, gamma=2.0)
    easy = focal(torch.tensor([0.9, 0.1]), torch.tensor([1.0, 0.0]))
    hard = focal(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
    assert round(easy.item(), 4) == 0.0005
    assert round(hard.item(), 4) == 0.0866


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.9])
def test_focal_on_logits_equals_torchvision_in_value_and_gradient(gamma, alpha):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64) * 4).requires_grad_(True)
    target = (torch.rand(8, 1, 6, 6, generator=g) > 0.8).double()
    ours = create("focal", alpha=alpha, gamma=gamma)(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    theirs = sigmoid_focal_loss(logits, target, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction="mean")
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(grad_ours, grad_theirs)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 2.5])
def test_focal_fused_backward_passes_gradcheck_with_soft_targets(gamma):
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(5, 3, dtype=torch.float64)
    focal = create("focal", mode="multilabel", gamma=gamma, alpha=0.3)
    assert torch.autograd.gradcheck(lambda x: focal(x, soft), (logits,))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_is_finite_for_logits_of_plus_minus_100(gamma):
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0])  # two perfectly right, two perfectly wrong
    value = create("focal", gamma=gamma)(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    assert logits.grad[0] == 0 and logits.grad[1] == 0
    multiclass = torch.tensor([[100.0, -100.0, 0.0]], requires_grad=True)
    value = create("focal", mode="multiclass", gamma=gamma)(multiclass, torch.tensor([1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(multiclass.grad).all()


def test_focal_reductions_and_ignore_index():
    logits = torch.randn(4, 5, dtype=torch.float64)
    target = (torch.rand(4, 5) > 0.5).double()
    per_element = sigmoid_focal_loss(logits, target, reduction="none")
    torch.testing.assert_close(create("focal", mode="multilabel", reduction="none")(logits, target), per_element)
    torch.testing.assert_close(create("focal", mode="multilabel", reduction="sum")(logits, target), per_element.sum())
    target[0] = -1
    ignored = create("focal", mode="multilabel", ignore_index=-1)(logits, target)
    torch.testing.assert_close(ignored, per_element[1:].mean())


def test_focal_binary_accepts_a_missing_channel_axis_and_never_broadcasts():
    logits, target = torch.randn(6, 1), (torch.rand(6) > 0.5).float()
    focal = create("focal")
    torch.testing.assert_close(focal(logits, target), sigmoid_focal_loss(logits[:, 0], target, reduction="mean"))
    with pytest.raises(ValueError, match=r"'focal \(binary\)'.*\(6, 2\).*\(6,\)"):
        focal(torch.randn(6, 2), target)


# -- focal, multiclass ------------------------------------------------------------------------

def softmax_focal_reference(logits, target, gamma, alpha=None):
    """Per element: -alpha_t (1 - p_t)^gamma log p_t, with p_t the softmax of the true class."""
    losses = []
    for row, label in zip(logits.unbind(0), target.tolist()):
        p_t = torch.softmax(row, 0)[label]
        weight = 1.0 if alpha is None else (alpha[label] if isinstance(alpha, list) else alpha)
        losses.append(-weight * (1 - p_t) ** gamma * torch.log(p_t))
    return torch.stack(losses).mean()


def test_multiclass_focal_with_gamma_0_is_cross_entropy():
    logits, target = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 4, (10,))
    focal = create("focal", mode="multiclass", gamma=0.0, alpha=None)
    torch.testing.assert_close(focal(logits, target), F.cross_entropy(logits, target))


@pytest.mark.parametrize("alpha", [None, 0.5, [0.1, 0.2, 0.3, 0.4]])
def test_multiclass_focal_matches_the_formula(alpha):
    logits, target = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 4, (10,))
    focal = create("focal", mode="multiclass", gamma=2.0, alpha=alpha)
    torch.testing.assert_close(focal(logits, target), softmax_focal_reference(logits, target, 2.0, alpha))
    # one-hot targets give the same value as indices
    torch.testing.assert_close(focal(logits, F.one_hot(target, 4).double()), focal(logits, target))


def test_multiclass_focal_on_images_with_ignore_index_and_gradcheck():
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = 255
    focal = create("focal", mode="multiclass", ignore_index=255, alpha=[1.0, 2.0, 0.5])
    flat_logits = logits.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    kept = target.reshape(-1) != 255
    expected = softmax_focal_reference(flat_logits[kept], target.reshape(-1)[kept], 2.0, [1.0, 2.0, 0.5])
    torch.testing.assert_close(focal(logits, target), expected)
    assert torch.autograd.gradcheck(lambda x: focal(x, target), (logits,))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
def test_multiclass_focal_terms_in_one_node_equal_autograd_in_value_and_gradient(gamma):
    """The plain options give the focal terms from one node with a closed-form derivative:
    against the formula through autograd, with perfectly right and wrong pixels at +-100."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) * 3
    logits[0, :, 0, 0] = torch.tensor([100.0, -100.0, 0.0, 0.0])
    logits[0, :, 0, 1] = torch.tensor([100.0, -100.0, 0.0, 0.0])
    logits.requires_grad_(True)
    target = torch.randint(0, 4, (2, 3, 3), generator=g)
    target[0, 0, 0], target[0, 0, 1] = 0, 1  # p_t = 1 and p_t = e^-200
    ours = create("focal", mode="multiclass", alpha=None, gamma=gamma, reduction="none")(logits, target)
    assert ours.grad_fn.name() == "SoftmaxPickBackward"
    log_p = F.log_softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    theirs = -(1 - log_p.exp()).clamp_min(0) ** gamma * log_p
    torch.testing.assert_close(ours, theirs)
    upstream = torch.rand(ours.shape, generator=g, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad(ours, logits, upstream)
    (grad_theirs,) = torch.autograd.grad(theirs, logits, upstream)
    assert torch.isfinite(grad_ours).all()
    finite = torch.isfinite(grad_theirs)  # autograd's 0 * inf at p_t = 1 for gamma < 1
    torch.testing.assert_close(grad_ours[finite], grad_theirs[finite])
    small = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    focal = create("focal", mode="multiclass", alpha=[0.5, 1.0, 2.0, 1.5], gamma=gamma)
    assert torch.autograd.gradcheck(lambda x: focal(x, target[:, 0]), (small,))


def test_softmax_pick_is_log_softmax_at_the_target_in_value_and_gradient():
    """The multiclass focal's log p_t: torch's log_softmax + gather, also where p_t underflows."""
    from torchtk.plugins.losses._focal import SoftmaxPick

    g = torch.Generator().manual_seed(3)
    for dtype, scale in ((torch.float64, 3.0), (torch.float32, 3.0), (torch.float32, 100.0)):
        logits = (torch.randn(3, 6, 5, 4, generator=g, dtype=dtype) * scale).requires_grad_(True)
        target = torch.randint(0, 6, (3, 5, 4), generator=g)
        upstream = torch.rand(3, 5, 4, generator=g, dtype=dtype)
        ours = SoftmaxPick.apply(logits, target.unsqueeze(1))
        (grad_ours,) = torch.autograd.grad(ours, logits, upstream)
        theirs = F.log_softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
        (grad_theirs,) = torch.autograd.grad(theirs, logits, upstream)
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(grad_ours, grad_theirs)
    assert torch.autograd.gradcheck(lambda x: SoftmaxPick.apply(x, target[:1, :2].unsqueeze(1)),
                                    (torch.randn(1, 6, 2, 4, dtype=torch.float64, requires_grad=True),))
    # the gradient reuses the forward's buffer; a retained graph's second backward recomputes it
    x = torch.randn(2, 4, 3, generator=g, requires_grad=True)
    value = SoftmaxPick.apply(x, torch.randint(0, 4, (2, 1, 3), generator=g)).sum()
    (first,) = torch.autograd.grad(value, x, retain_graph=True)
    (second,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(first, second)
    half = torch.randn(2, 3, 4, generator=g).half().requires_grad_(True)
    index = torch.randint(0, 3, (2, 1, 4), generator=g)
    value = SoftmaxPick.apply(half, index)
    value.sum().backward()
    assert value.dtype == torch.float32 and half.grad.dtype == torch.float16
    torch.testing.assert_close(value, F.log_softmax(half.float(), 1).gather(1, index).squeeze(1))


def test_focal_params_are_checked_against_the_mode():
    with pytest.raises(ParamsError, match="only with mode: multiclass"):
        create("focal", alpha=[0.5, 0.5])
    with pytest.raises(ParamsError, match=r"\[0, 1\]"):
        create("focal", alpha=1.5)
    with pytest.raises(ValueError, match="3 class weights but the output has 4"):
        create("focal", mode="multiclass", alpha=[1.0, 1.0, 1.0])(torch.randn(2, 4), torch.tensor([0, 1]))


# -- batch_focal and sce ----------------------------------------------------------------------

def test_batch_focal_is_the_tutorial_formula():
    logits, target = torch.randn(16, 1, dtype=torch.float64), (torch.rand(16, 1) > 0.5).double()
    # the tutorial's code: sigmoid, mean BCE, then the focal factor of the mean
    bce = F.binary_cross_entropy(torch.sigmoid(logits).view(-1), target.view(-1), reduction="mean")
    expected = 0.8 * (1 - torch.exp(-bce)) ** 2 * bce
    torch.testing.assert_close(create("batch_focal")(logits, target), expected)
    probabilities = create("batch_focal", from_logits=False, alpha=0.5, gamma=1.0)(torch.sigmoid(logits), target)
    torch.testing.assert_close(probabilities, 0.5 * (1 - torch.exp(-bce)) * bce)


def sce_reference(pred, labels, alpha, beta, num_classes):
    """The paper's reference implementation (Wang et al. 2019), as published."""
    ce = F.cross_entropy(pred, labels)
    pred = F.softmax(pred, dim=1)
    pred = torch.clamp(pred, min=1e-7, max=1.0)
    label_one_hot = F.one_hot(labels, num_classes).to(pred.dtype)
    label_one_hot = torch.clamp(label_one_hot, min=1e-4, max=1.0)
    rce = -1 * torch.sum(pred * torch.log(label_one_hot), dim=1)
    return alpha * ce + beta * rce.mean()


@pytest.mark.parametrize("alpha,beta", [(0.1, 1.0), (6.0, 0.1)])
def test_sce_matches_the_reference_implementation(alpha, beta):
    logits, labels = torch.randn(12, 10, dtype=torch.float64) * 3, torch.randint(0, 10, (12,))
    torch.testing.assert_close(create("sce", alpha=alpha, beta=beta)(logits, labels),
                               sce_reference(logits, labels, alpha, beta, 10))
    torch.testing.assert_close(create("sce", alpha=alpha, beta=beta, num_classes=10)(logits, labels),
                               sce_reference(logits, labels, alpha, beta, 10))


def test_sce_gradcheck_extremes_and_errors():
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 4, (6,))
    assert torch.autograd.gradcheck(lambda x: create("sce")(x, labels), (logits,))
    extreme = torch.tensor([[100.0, -100.0, 0.0]], requires_grad=True)
    value = create("sce")(extreme, torch.tensor([1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(extreme.grad).all()
    assert value.item() == pytest.approx(0.1 * 200 + 1.0 * -math.log(1e-4) * (1 - 1e-7), rel=1e-4)
    with pytest.raises(ValueError, match="num_classes is 5 but the output has 4"):
        create("sce", num_classes=5)(logits, labels)
    with pytest.raises(ValueError, match=r"'sce'.*\(6, 4\).*\(6, 2\)"):
        create("sce")(logits, torch.zeros(6, 2, dtype=torch.long))


def test_classification_losses_are_listed():
    assert {"focal", "batch_focal", "sce"} <= set(torchtk.registry.names("loss"))
    assert "0.0866" in torchtk.registry.describe("loss", "focal")["description"]


# -- focal options, soft_bce ---------------------------------------------------------------

def hand_sigmoid_focal(logits, target, gamma=2.0, alpha=0.25, threshold=None):
    """Per element: the factor and ce written out from p = sigmoid(x)."""
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    ce = -torch.log(p_t)
    if threshold is None:
        factor = (1 - p_t) ** gamma
    else:
        factor = torch.where(p_t < threshold, torch.ones_like(p_t), ((1 - p_t) / threshold) ** gamma)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return factor, alpha_t * factor * ce


def test_focal_reduced_threshold_and_normalized_match_their_formulas():
    logits = torch.tensor([[2.0, -1.0, 0.3], [-3.0, 0.5, 4.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    factor, terms = hand_sigmoid_focal(logits, target, threshold=0.5)
    reduced = create("focal", mode="multilabel", reduced_threshold=0.5)
    torch.testing.assert_close(reduced(logits, target), terms.mean())
    factor, terms = hand_sigmoid_focal(logits, target)
    normalized = create("focal", mode="multilabel", normalized=True, reduction="sum")
    torch.testing.assert_close(normalized(logits, target), terms.sum() / factor.sum())
    torch.testing.assert_close(create("focal", mode="multilabel", normalized=True)(logits, target),
                               terms.mean() / factor.sum())
    # multiclass: the factor of the true class's probability
    classes = torch.tensor([0, 2])
    p_t = torch.softmax(logits, 1)[torch.arange(2), classes]
    factor = torch.where(p_t < 0.4, torch.ones_like(p_t), ((1 - p_t) / 0.4) ** 2)
    expected = (-factor * p_t.log()).sum() / factor.sum()
    focal = create("focal", mode="multiclass", alpha=None, reduced_threshold=0.4, normalized=True, reduction="sum")
    torch.testing.assert_close(focal(logits, classes), expected)


def test_focal_class_weights_and_include_background():
    logits = torch.tensor([[[2.0, -1.0], [0.3, 1.0], [-2.0, 0.0]]], dtype=torch.float64)  # (1, 3, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    _, terms = hand_sigmoid_focal(logits, target)
    w = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64).reshape(1, 3, 1)
    weighted = create("focal", mode="multilabel", class_weights=w.flatten().tolist())
    torch.testing.assert_close(weighted(logits, target), (w * terms).sum() / (w.sum() * 2))
    torch.testing.assert_close(create("focal", mode="multilabel", include_background=False)(logits, target),
                               terms[:, 1:].mean())
    torch.testing.assert_close(create("focal", mode="multilabel", include_background=False,
                                      class_weights=w.flatten().tolist())(logits, target),
                               (w[:, 1:] * terms[:, 1:]).sum() / (w[:, 1:].sum() * 2))
    # multiclass: pixels of class 0 give no term and still count in the mean
    classes = torch.tensor([[0, 2]])
    plain = create("focal", mode="multiclass", reduction="none")(logits, classes)
    no_background = create("focal", mode="multiclass", include_background=False)(logits, classes)
    torch.testing.assert_close(no_background, plain[0, 1] / 2)
    with pytest.raises(ParamsError, match="class_weights needs mode multilabel"):
        create("focal", mode="multiclass", class_weights=[1.0, 2.0])
    with pytest.raises(ParamsError, match="include_background: false needs"):
        create("focal", include_background=False)
    with pytest.raises(ValueError, match="class_weights has 2 weights but the output has 3 channels"):
        create("focal", mode="multilabel", class_weights=[1.0, 2.0])(logits, target)


@pytest.mark.parametrize("options", [dict(normalized=True), dict(reduced_threshold=0.5), dict(class_weights=[1.0, 3.0]),
                                     dict(include_background=False), dict(normalized=True, reduced_threshold=0.3)])
def test_focal_options_give_finite_gradients_at_logits_100(options):
    logits = torch.tensor([[100.0, -100.0], [-100.0, 100.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    value = create("focal", mode="multilabel", **options)(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    if "class_weights" not in options:
        multiclass = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0]], requires_grad=True)
        value = create("focal", mode="multiclass", **options)(multiclass, torch.tensor([1, 1]))
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(multiclass.grad).all()


def test_focal_options_gradcheck():
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(3, 4, dtype=torch.float64)
    for options in (dict(normalized=True), dict(reduced_threshold=0.6, gamma=2.0), dict(class_weights=[1.0, 0.5, 2.0, 0.0])):
        focal = create("focal", mode="multilabel", **options)
        assert torch.autograd.gradcheck(lambda x: focal(x, soft), (logits,))


def test_soft_bce_label_smoothing_ignore_index_and_pos_weight():
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, -100.0, 1.0]], dtype=torch.float64)
    kept = torch.tensor([True, True, False, True])
    smoothed = torch.tensor([0.9, 0.1, 0.0, 0.9], dtype=torch.float64)
    p = torch.sigmoid(logits[0])
    terms = -(3.0 * smoothed * p.log() + (1 - smoothed) * (1 - p).log())
    loss = create("soft_bce", label_smoothing=0.1, ignore_index=-100, pos_weight=3.0)
    torch.testing.assert_close(loss(logits, target), terms[kept].mean())
    per_element = create("soft_bce", label_smoothing=0.1, ignore_index=-100, pos_weight=3.0, reduction="none")
    torch.testing.assert_close(per_element(logits, target)[0], torch.where(kept, terms, 0))
    # without options it is torch's BCE on logits
    clean = target.clamp(min=0)
    torch.testing.assert_close(create("soft_bce")(logits, clean), F.binary_cross_entropy_with_logits(logits, clean))
    # the direct path (no ignore_index, no pos_weight; float32) in value and gradient, target included
    x = torch.randn(2, 1, 3, 3, requires_grad=True)
    t = torch.rand(2, 1, 3, 3, requires_grad=True)
    for reduction in ("mean", "sum", "none"):
        ours = create("soft_bce", label_smoothing=0.1, reduction=reduction)(x, t)
        theirs = F.binary_cross_entropy_with_logits(x, t * 0.8 + 0.1, reduction=reduction)
        torch.testing.assert_close(ours, theirs)
        upstream = torch.rand(ours.shape)
        grads = torch.autograd.grad(ours, (x, t), upstream), torch.autograd.grad(theirs, (x, t), upstream)
        for got, want in zip(*grads):
            torch.testing.assert_close(got, want)
    logits = torch.tensor([[100.0, -100.0, 100.0]], requires_grad=True)
    value = create("soft_bce", label_smoothing=0.2)(logits, torch.tensor([[0.0, 1.0, 1.0]]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    with pytest.raises(ParamsError, match="pos_weight must be > 0"):
        create("soft_bce", pos_weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="pos_weight has 2 values"):
        create("soft_bce", pos_weight=[1.0, 2.0])(torch.zeros(2, 3), torch.zeros(2, 3))
