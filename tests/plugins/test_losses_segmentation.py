"""Region losses (dice, dice_bce, iou/jaccard, tversky): values against formulas written
out here, every mode and option, empty targets, float16, gradients and shape errors."""

import pytest
import torch
import torch.nn.functional as F

import torchtk

REGION_LOSSES = ["dice", "dice_bce", "iou", "tversky"]


def create(name, **params):
    return torchtk.registry.create("loss", name, **params)


# -- the tutorial's implementations, copied as written there -----------------------------

def tutorial_dice(inputs, targets, smooth=1):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    intersection = (inputs * targets).sum()
    dice = (2.0 * intersection + smooth) / (inputs.sum() + targets.sum() + smooth)
    return 1 - dice


def tutorial_dice_bce(inputs, targets, smooth=1):
    probs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    intersection = (probs * targets).sum()
    dice_loss = 1 - (2.0 * intersection + smooth) / (probs.sum() + targets.sum() + smooth)
    return F.binary_cross_entropy(probs, targets, reduction="mean") + dice_loss


def tutorial_iou(inputs, targets, smooth=1):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    intersection = (inputs * targets).sum()
    union = (inputs + targets).sum() - intersection
    return 1 - (intersection + smooth) / (union + smooth)


def tutorial_focal_tversky(inputs, targets, smooth=1, alpha=0.5, beta=0.5, gamma=1):
    inputs = torch.sigmoid(inputs).view(-1)
    targets = targets.view(-1)
    tp = (inputs * targets).sum()
    fp = ((1 - targets) * inputs).sum()
    fn = (targets * (1 - inputs)).sum()
    tversky = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return (1 - tversky) ** gamma


@pytest.fixture
def binary_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(4, 1, 16, 16, generator=g) > 0.7).double()
    return logits, target


def test_all_region_losses_are_listed_with_aliases():
    names = torchtk.registry.names("loss")
    assert {"dice", "dice_bce", "iou", "tversky"} <= set(names)
    assert torchtk.registry.resolve("loss", "jaccard").name == "iou"
    shown = torchtk.registry.describe("loss", "dice")
    assert "2 * sum(p * t)" in shown["description"]
    assert {p["name"] for p in shown["params"]} == {
        "mode", "from_logits", "smooth", "smooth_nr", "smooth_dr", "ignore_index", "regions", "reduction",
        "empty_target", "include_background", "classes", "class_weights", "squared_pred", "soft_label", "log_loss"}
    assert all(p["description"] for p in shown["params"])


def test_defaults_reproduce_the_tutorial_losses(binary_batch):
    logits, target = binary_batch
    torch.testing.assert_close(create("dice")(logits, target), tutorial_dice(logits, target))
    torch.testing.assert_close(create("iou")(logits, target), tutorial_iou(logits, target))
    torch.testing.assert_close(create("dice_bce")(logits, target), tutorial_dice_bce(logits, target))
    torch.testing.assert_close(create("tversky")(logits, target), tutorial_focal_tversky(logits, target))
    torch.testing.assert_close(create("tversky", alpha=0.3, beta=0.7, gamma=0.75)(logits, target),
                               tutorial_focal_tversky(logits, target, alpha=0.3, beta=0.7, gamma=0.75))


def test_tversky_with_half_weights_is_dice_and_with_unit_weights_is_iou(binary_batch):
    logits, target = binary_batch
    torch.testing.assert_close(create("tversky", alpha=0.5, beta=0.5, smooth=0.0)(logits, target),
                               create("dice", smooth=0.0)(logits, target))
    torch.testing.assert_close(create("tversky", alpha=1.0, beta=1.0)(logits, target), create("iou")(logits, target))


def test_channel_axis_of_size_one_may_be_missing(binary_batch):
    logits, target = binary_batch
    loss = create("dice")
    assert loss(logits[:, 0], target) == loss(logits, target) == loss(logits, target[:, 0])


def test_probabilities_are_accepted_with_from_logits_false(binary_batch):
    logits, target = binary_batch
    torch.testing.assert_close(create("dice", from_logits=False)(torch.sigmoid(logits), target),
                               tutorial_dice(logits, target))


# -- independent reference for every mode and reduction -----------------------------------

def reference(name, prob, onehot, valid, per_image, smooth=1.0, alpha=0.5, beta=0.5, gamma=1.0):
    """Loop over regions (class over the batch, or class of one image) and score each."""
    n, c = prob.shape[:2]
    losses = []
    for image in (range(n) if per_image else [None]):
        for k in range(c):
            p = prob[:, k] if image is None else prob[image, k]
            t = onehot[:, k] if image is None else onehot[image, k]
            v = valid[:, 0] if image is None else valid[image, 0]
            p, t = p[v], t[v]
            inter, psum, tsum = (p * t).sum(), p.sum(), t.sum()
            if name == "dice":
                score = (2 * inter + smooth) / (psum + tsum + smooth)
                losses.append(1 - score)
            elif name == "iou":
                losses.append(1 - (inter + smooth) / (psum + tsum - inter + smooth))
            else:
                fp, fn = (p * (1 - t)).sum(), ((1 - p) * t).sum()
                losses.append((1 - (inter + smooth) / (inter + alpha * fp + beta * fn + smooth)) ** gamma)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_multiclass_matches_the_per_region_formula(name, reduction):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 8, 8), generator=g)
    target[0, :2] = 255
    options = {"alpha": 0.3, "beta": 0.7, "gamma": 1.5} if name == "tversky" else {}
    loss = create(name, mode="multiclass", ignore_index=255, regions=reduction, **options)
    valid = (target != 255).unsqueeze(1)
    onehot = F.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).double()
    expected = reference(name, torch.softmax(logits, 1), onehot, valid, reduction == "image", **options)
    torch.testing.assert_close(loss(logits, target), expected)
    # one-hot targets give the same value as class indices
    plain = create(name, mode="multiclass", regions=reduction, **options)
    clean = torch.randint(0, 4, (3, 8, 8), generator=g)
    torch.testing.assert_close(plain(logits, clean), plain(logits, F.one_hot(clean, 4).permute(0, 3, 1, 2).double()))


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_multilabel_and_binary_ignore_index_match_the_per_region_formula(name, reduction):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    target = (torch.rand(2, 3, 6, 6, generator=g) > 0.5).double()
    loss = create(name, mode="multilabel", regions=reduction)
    valid = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    torch.testing.assert_close(loss(logits, target),
                               reference(name, torch.sigmoid(logits), target, valid, reduction == "image"))
    # binary with ignored pixels: the same as scoring the kept pixels only
    binary_target = target[:, :1].clone()
    binary_target[:, :, :2] = -1
    kept = binary_target != -1
    loss = create(name, ignore_index=-1, regions=reduction)
    expected = reference(name, torch.sigmoid(logits[:, :1]), binary_target.clamp(min=0), kept, reduction == "image")
    torch.testing.assert_close(loss(logits[:, :1], binary_target), expected)


def test_dice_bce_multiclass_is_cross_entropy_plus_dice():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 5, 5), generator=g)
    target[0, 0] = 255
    options = dict(mode="multiclass", ignore_index=255)
    expected = F.cross_entropy(logits, target, ignore_index=255) + create("dice", **options)(logits, target)
    torch.testing.assert_close(create("dice_bce", **options)(logits, target), expected)
    weighted = create("dice_bce", bce_weight=0.5, dice_weight=2.0, **options)(logits, target)
    torch.testing.assert_close(weighted, 0.5 * F.cross_entropy(logits, target, ignore_index=255)
                               + 2.0 * create("dice", **options)(logits, target))


def test_dice_bce_binary_ignore_index_averages_bce_over_kept_pixels(binary_batch):
    logits, target = binary_batch
    target = target.clone()
    target[0] = 255
    kept = target != 255
    bce = F.binary_cross_entropy_with_logits(logits[kept], target[kept])
    dice = create("dice", ignore_index=255)(logits, target)
    torch.testing.assert_close(create("dice_bce", ignore_index=255)(logits, target), bce + dice)


# -- empty targets -----------------------------------------------------------------------

EMPTY = torch.zeros(1, 1, 4, 4)
SOME_FOREGROUND = torch.zeros(1, 1, 4, 4)
SOME_FOREGROUND[..., :2, :2] = 1.0  # predicted probabilities: 4 pixels of foreground


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_empty_target_policies(name):
    def loss(policy, prediction, smooth=1.0):
        return create(name, from_logits=False, empty_target=policy, smooth=smooth)(prediction, EMPTY).item()

    # penalize_fp: predicting nothing is perfect; 4 false-positive pixels cost 1 - 1 / (4 + 1)
    # (Tversky weighs false positives by alpha = 0.5: 1 - 1 / (0.5 * 4 + 1))
    assert loss("penalize_fp", EMPTY) == 0.0
    false_positive_cost = 0.5 * 4 if name == "tversky" else 4
    assert loss("penalize_fp", SOME_FOREGROUND) == pytest.approx(1 - 1 / (false_positive_cost + 1))
    assert loss("penalize_fp", EMPTY, smooth=0.0) == 0.0  # 0/0 is a perfect empty prediction, not NaN
    assert loss("penalize_fp", SOME_FOREGROUND, smooth=0.0) == 1.0
    # zero: loss 0 whatever is predicted
    assert loss("zero", EMPTY) == 0.0
    assert loss("zero", SOME_FOREGROUND) == 0.0
    # skip: an all-empty batch contributes nothing
    assert loss("skip", EMPTY) == 0.0
    assert loss("skip", SOME_FOREGROUND) == 0.0


def test_empty_target_policies_per_image_zero_counts_and_skip_leaves_out():
    prediction = torch.cat([SOME_FOREGROUND, SOME_FOREGROUND * 0.5])
    target = torch.cat([SOME_FOREGROUND, EMPTY])  # image 0 has foreground, image 1 is empty

    def loss(policy):
        return create("dice", from_logits=False, regions="image", empty_target=policy)(prediction, target).item()

    image0 = 1 - (2 * 4 + 1) / (4 + 4 + 1)
    image1 = 1 - 1 / (2 + 1)
    assert loss("penalize_fp") == pytest.approx((image0 + image1) / 2)
    assert loss("zero") == pytest.approx(image0 / 2)
    assert loss("skip") == pytest.approx(image0)


def test_all_zero_and_all_one_targets_give_zero_loss_when_predicted_exactly():
    ones = torch.ones(2, 1, 4, 4)
    for name in ["dice", "iou", "tversky"]:
        for smooth in (0.0, 1.0):
            for target in (ones, torch.zeros_like(ones)):
                assert create(name, from_logits=False, smooth=smooth)(target, target).item() == pytest.approx(0.0)
    # and a full mask against an empty prediction is the worst case
    assert create("dice", from_logits=False, smooth=0.0)(torch.zeros_like(ones), ones).item() == 1.0


def test_empty_policy_gradients_are_finite_and_skip_detaches_empty_regions():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    target = torch.cat([SOME_FOREGROUND, EMPTY])
    create("dice", regions="image", empty_target="skip")(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


# -- numerics ------------------------------------------------------------------------------

def test_float16_512x512_gives_a_finite_loss():
    logits = torch.full((1, 1, 512, 512), 8.0, dtype=torch.float16)
    target = torch.ones(1, 1, 512, 512, dtype=torch.float16)
    assert torch.isinf(torch.sigmoid(logits).sum())  # a float16 region sum overflows...
    for name in REGION_LOSSES:
        value = create(name)(logits, target)
        assert value.dtype == torch.float32 and torch.isfinite(value), name  # ...ours is summed in float32
    with torch.autocast("cpu", dtype=torch.float16):
        value = create("dice_bce")(logits.float(), target)
    assert torch.isfinite(value)


@pytest.mark.parametrize("name", REGION_LOSSES)
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_gradcheck_in_float64(name, mode, reduction):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3 if mode != "binary" else 1, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    if mode == "multiclass":
        target = torch.randint(0, 3, (2, 4, 4), generator=g)
        target[0, 0] = 9
    else:
        target = (torch.rand(logits.shape, generator=g) > 0.5).double()
        target[0, 0, 0] = 9
    options = {"gamma": 1.7} if name == "tversky" else {}
    for policy in ("penalize_fp", "zero", "skip"):
        loss = create(name, mode=mode, regions=reduction, ignore_index=9, empty_target=policy, **options)
        assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,))


def test_soft_targets_get_gradients_too():
    logits = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, t: create("dice")(x, t), (logits, target))
    assert torch.autograd.gradcheck(lambda x, t: create("iou", regions="image")(x, t), (logits, target))


@pytest.mark.parametrize("name", REGION_LOSSES)
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_logits_of_plus_minus_100_give_finite_loss_and_gradient(name, mode):
    logits = torch.full((2, 1 if mode == "binary" else 3, 8, 8), 100.0)
    logits[:, :, :4] = -100.0
    logits.requires_grad_(True)
    target = torch.zeros(2, 8, 8, dtype=torch.long) if mode == "multiclass" else torch.ones(2, 1, 8, 8)
    value = create(name, mode=mode, smooth=0.0)(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


# -- errors --------------------------------------------------------------------------------

def test_shape_errors_name_the_loss_and_both_shapes():
    with pytest.raises(ValueError, match=r"'dice \(binary\)'.*\(4, 2, 8, 8\).*\(4, 1, 8, 8\)"):
        create("dice")(torch.randn(4, 2, 8, 8), torch.ones(4, 1, 8, 8))
    with pytest.raises(ValueError, match=r"'iou \(multiclass\)'.*\(4, 3, 8, 8\).*\(4, 8, 9\)"):
        create("iou", mode="multiclass")(torch.randn(4, 3, 8, 8), torch.zeros(4, 8, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        create("dice", mode="multiclass")(torch.randn(4, 3, 8, 8), torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match=r"'tversky \(multilabel\)'"):
        create("tversky", mode="multilabel")(torch.randn(4, 3, 8, 8), torch.zeros(4, 2, 8, 8))


def test_invalid_params_are_rejected_before_training():
    from torchtk.core.errors import ParamsError

    with pytest.raises(ParamsError):
        create("dice", empty_target="ignore")
    with pytest.raises(ParamsError):
        create("dice", smooth=-1.0)
    with pytest.raises(ParamsError):
        create("dice", reduction="batchwise")


def test_the_old_reduction_batch_or_image_still_means_regions():
    """Before reduction took mean/sum/none it chose the regions; old specs keep working."""
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    assert create("dice", reduction="image")(logits, target) == create("dice", regions="image")(logits, target)
    from torchtk.plugins.losses.segmentation import DiceParams

    assert DiceParams(reduction="image").regions == "image" and DiceParams(reduction="image").reduction == "mean"


@pytest.mark.parametrize("regions", ["batch", "image"])
@pytest.mark.parametrize("name", REGION_LOSSES)
def test_multiclass_index_targets_without_one_hot_pass_gradcheck(name, regions):
    """Class indices without ignore_index take the scatter path (no one-hot): same values
    as the one-hot, and gradcheck."""
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    target[1] = 0  # classes 1 and 2 absent from image 1
    for options in ({}, {"include_background": False}, {"classes": [2]}):
        loss = create(name, mode="multiclass", regions=regions, **options)
        onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).double()
        torch.testing.assert_close(loss(logits, target), loss(logits, onehot))
        assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,))


@pytest.mark.parametrize("classes", [3, 20])
def test_softmax_index_sums_gradient_with_many_classes_and_a_retained_graph(classes):
    """The fused softmax backward writes into its forward buffer (class by class up to 16
    classes, at once above): same gradient as the one-hot path, and again on a second
    backward through a retained graph."""
    g = torch.Generator().manual_seed(15)
    logits = torch.randn(2, classes, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, classes, (2, 5, 5), generator=g)
    onehot = F.one_hot(target, classes).permute(0, 3, 1, 2).double()
    for name in REGION_LOSSES:
        loss = create(name, mode="multiclass")
        value = loss(logits, target)
        (first,) = torch.autograd.grad(value, logits, retain_graph=True)
        (second,) = torch.autograd.grad(value, logits)
        (dense,) = torch.autograd.grad(loss(logits, onehot), logits)
        torch.testing.assert_close(first, dense)
        torch.testing.assert_close(second, dense)


@pytest.mark.parametrize("name,options", [("dice", {}), ("iou", {}), ("dice_bce", {}),
                                          ("dice_bce", {"bce_weight": 0.3, "dice_weight": 1.7})])
def test_binary_one_node_path_matches_the_general_path_in_value_and_gradient(name, options):
    """float32 binary with the defaults is one autograd node with closed-form derivatives
    (dice_bce: its BCE term too); against the float64 general path (soft targets, so the
    target's gradient counts too)."""
    g = torch.Generator().manual_seed(14)
    logits = (torch.randn(4, 1, 8, 8, generator=g) * 3).requires_grad_(True)
    target = torch.rand(4, 1, 8, 8, generator=g).requires_grad_(True)
    loss = create(name, smooth=0.5, **options)
    value = loss(logits, target)
    grads = torch.autograd.grad(value * 2.5, (logits, target))
    x64, t64 = logits.detach().double().requires_grad_(True), target.detach().double().requires_grad_(True)
    expected = loss(x64, t64)
    expected_grads = torch.autograd.grad(expected * 2.5, (x64, t64))
    torch.testing.assert_close(value, expected.float())
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want.float())
    assert value.grad_fn.name() == "BinaryRegionLossBackward"
    # logits only (the gradient is written into the forward's buffer), twice through a retained graph
    value = loss(logits, target.detach())
    (first,) = torch.autograd.grad(value, logits, retain_graph=True)
    (second,) = torch.autograd.grad(value, logits)
    (want,) = torch.autograd.grad(loss(x64, t64.detach()), x64)
    torch.testing.assert_close(first, want.float())
    torch.testing.assert_close(second, want.float())
    # score 0 (smooth_nr 0, nothing true overlaps): dS/dP is 0 and the in-place form is skipped
    empty = torch.zeros_like(target.detach())
    loss = create(name, smooth_nr=0.0, smooth_dr=1.0, **options)
    (got,) = torch.autograd.grad(loss(logits, empty), logits)
    (want,) = torch.autograd.grad(loss(x64, empty.double()), x64)
    torch.testing.assert_close(got, want.float())
