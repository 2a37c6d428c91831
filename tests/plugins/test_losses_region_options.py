"""Region-loss options (dice, iou, tversky, dice_bce) against hand computations from the
formulas in their docstrings, on small tensors: smoothing, channels, class weights,
reductions, squared_pred, soft_label, log_loss, target dtypes and dice_bce's BCE options."""

import pytest
import torch
import torch.nn.functional as F
from torchtk.core.errors import ParamsError

import torchtk

REGION_LOSSES = ["dice", "iou", "tversky", "dice_bce"]


def create(name, **params):
    return torchtk.registry.create("loss", name, **params)


def score(name, inter, psum, tsum, nr=1.0, dr=1.0, alpha=0.5, beta=0.5):
    if name in ("dice", "dice_bce"):
        return (2 * inter + nr) / (psum + tsum + dr)
    if name == "iou":
        return (inter + nr) / (psum + tsum - inter + dr)
    return (inter + nr) / (inter + alpha * (psum - inter) + beta * (tsum - inter) + dr)


def per_class(name, prob, onehot, **kw):
    """Loss of each class summed over the batch: a (C,) tensor, one region per class."""
    dims = (0, 2, 3)
    return 1 - score(name, (prob * onehot).sum(dims), prob.sum(dims), onehot.sum(dims), **kw)


@pytest.fixture
def multiclass():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    return logits, target, onehot


def test_every_option_is_listed_with_a_description():
    for name in REGION_LOSSES:
        params = {p["name"]: p for p in torchtk.registry.describe("loss", name)["params"]}
        for option in ("smooth_nr", "smooth_dr", "include_background", "classes", "class_weights", "reduction",
                       "squared_pred", "soft_label", "log_loss", "regions"):
            assert params[option]["description"], (name, option)
    params = {p["name"] for p in torchtk.registry.describe("loss", "dice_bce")["params"]}
    assert {"pos_weight", "label_smoothing", "bce_weight", "dice_weight"} <= params


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_separate_numerator_and_denominator_smoothing(name):
    prob = torch.tensor([[[[0.9, 0.2], [0.6, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    inter, psum, tsum = 0.9 + 0.6, 1.7, 2.0
    value = create(name, from_logits=False, smooth_nr=0.25, smooth_dr=2.0)(prob, target)
    assert value.item() == pytest.approx(1 - score(name, inter, psum, tsum, nr=0.25, dr=2.0))
    # smooth alone sets both; a given smooth_nr/smooth_dr wins over it
    assert create(name, from_logits=False, smooth=3.0, smooth_nr=0.25, smooth_dr=2.0)(prob, target) == value
    assert create(name, from_logits=False, smooth=0.5)(prob, target).item() == pytest.approx(
        1 - score(name, inter, psum, tsum, nr=0.5, dr=0.5))


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_reduction_none_sum_mean_and_the_channels_scored(name, multiclass):
    logits, target, onehot = multiclass
    losses = per_class(name, torch.softmax(logits, 1), onehot)
    torch.testing.assert_close(create(name, mode="multiclass", reduction="none")(logits, target), losses)
    torch.testing.assert_close(create(name, mode="multiclass", reduction="sum")(logits, target), losses.sum())
    torch.testing.assert_close(create(name, mode="multiclass")(logits, target), losses.mean())
    # include_background: false scores channels 1.. after the softmax over all channels
    no_background = create(name, mode="multiclass", include_background=False, reduction="none")
    torch.testing.assert_close(no_background(logits, target), losses[1:])
    torch.testing.assert_close(create(name, mode="multiclass", include_background=False)(logits, target),
                               losses[1:].mean())
    torch.testing.assert_close(create(name, mode="multiclass", classes=[2, 0])(logits, target), losses[[2, 0]].mean())
    # one region per class and image with regions: image
    per_image = create(name, mode="multiclass", regions="image", reduction="none")(logits, target)
    assert per_image.shape == (2, 3)
    torch.testing.assert_close(per_image[1], per_class(name, torch.softmax(logits[1:], 1), onehot[1:]))
    # multilabel: channel 0 is left out of the sigmoid channels
    multilabel = create(name, mode="multilabel", include_background=False, reduction="none")(logits, onehot)
    torch.testing.assert_close(multilabel, per_class(name, torch.sigmoid(logits), onehot)[1:])


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_class_weights_give_the_weighted_mean(name, multiclass):
    logits, target, onehot = multiclass
    losses = per_class(name, torch.softmax(logits, 1), onehot)
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    weighted = create(name, mode="multiclass", class_weights=w.tolist())
    torch.testing.assert_close(weighted(logits, target), (w * losses).sum() / w.sum())
    torch.testing.assert_close(create(name, mode="multiclass", class_weights=w.tolist(), reduction="sum")(logits, target),
                               (w * losses).sum())
    torch.testing.assert_close(create(name, mode="multiclass", class_weights=w.tolist(), reduction="none")(logits, target),
                               w * losses)
    # one weight per output channel; the background's is dropped with it
    torch.testing.assert_close(create(name, mode="multiclass", class_weights=w.tolist(),
                                      include_background=False)(logits, target),
                               (w[1:] * losses[1:]).sum() / w[1:].sum())
    # regions: image weighs each image's class c by w_c: sum over images and classes / (N sum w)
    per_image = create(name, mode="multiclass", regions="image", reduction="none")(logits, target)
    torch.testing.assert_close(create(name, mode="multiclass", regions="image", class_weights=w.tolist())(logits, target),
                               (per_image * w).sum() / (2 * w.sum()))
    with pytest.raises(ValueError, match="class_weights has 2 weights but the output has 3 classes"):
        create(name, mode="multiclass", class_weights=[1.0, 2.0])(logits, target)


def test_class_weights_with_empty_target_policies():
    prob = torch.tensor([[[[0.8, 0.1]], [[0.2, 0.9]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]], dtype=torch.float64)  # class 1 empty
    losses = per_class("dice", prob, target)
    w = [3.0, 1.0]
    zero = create("dice", mode="multilabel", from_logits=False, class_weights=w, empty_target="zero")
    assert zero(prob, target).item() == pytest.approx(3 * losses[0].item() / 4)
    skip = create("dice", mode="multilabel", from_logits=False, class_weights=w, empty_target="skip")
    assert skip(prob, target).item() == pytest.approx(losses[0].item())
    none = create("dice", mode="multilabel", from_logits=False, empty_target="zero", reduction="none")
    torch.testing.assert_close(none(prob, target), torch.stack([losses[0], torch.zeros((), dtype=torch.float64)]))


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_squared_pred_sums_squares_in_the_denominator(name):
    prob = torch.tensor([[[[0.9, 0.2], [0.6, 0.3]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]], dtype=torch.float64)
    inter = 0.9 + 0.3
    psq, tsq = 0.81 + 0.04 + 0.36 + 0.09, 1.25
    value = create(name, from_logits=False, squared_pred=True)(prob, target)
    assert value.item() == pytest.approx(1 - score(name, inter, psq, tsq))


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_soft_label_intersection(name):
    prob = torch.tensor([[[[0.9, 0.2], [0.6, 0.3]]]], dtype=torch.float64)
    soft = torch.tensor([[[[1.0, 0.0], [0.5, 0.4]]]], dtype=torch.float64)
    psum, tsum = 2.0, 1.9
    inter = (psum + tsum - (0.1 + 0.2 + 0.1 + 0.1)) / 2
    value = create(name, from_logits=False, soft_label=True)(prob, soft)
    assert value.item() == pytest.approx(1 - score(name, inter, psum, tsum))
    assert value.item() != pytest.approx(create(name, from_logits=False)(prob, soft).item())
    # with 0/1 targets it is the plain formula
    hard = (soft > 0.45).double()
    torch.testing.assert_close(create(name, from_logits=False, soft_label=True)(prob, hard),
                               create(name, from_logits=False)(prob, hard))


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_log_loss_is_minus_log_of_the_score(name, multiclass):
    logits, target, onehot = multiclass
    scores = 1 - per_class(name, torch.softmax(logits, 1), onehot)
    torch.testing.assert_close(create(name, mode="multiclass", log_loss=True)(logits, target), (-scores.log()).mean())
    # a perfect prediction with smooth 0 and nothing true scores 1: loss 0, not -log(0)
    empty = torch.zeros(1, 1, 2, 2)
    assert create(name, from_logits=False, smooth=0.0, log_loss=True)(empty, empty).item() == 0.0
    assert create(name, from_logits=False, smooth=0.0, log_loss=True)(empty, empty + 1).item() == pytest.approx(
        -torch.log(torch.tensor(1e-7)).item())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
def test_integer_targets_are_cast(dtype, multiclass):
    logits, target, onehot = multiclass
    expected = create("dice", mode="multiclass")(logits, target)
    torch.testing.assert_close(create("dice", mode="multiclass")(logits, onehot.to(dtype)), expected)
    if dtype != torch.bool:
        torch.testing.assert_close(create("dice", mode="multiclass")(logits, target.to(dtype)), expected)
        torch.testing.assert_close(create("dice_bce", mode="multiclass")(logits, target.to(dtype)),
                                   create("dice_bce", mode="multiclass")(logits, target))


def test_an_integer_output_is_named_as_a_dtype_problem():
    with pytest.raises(ValueError, match=r"'dice \(binary\)': output dtype is torch.int64; expected floating-point"):
        create("dice")(torch.ones(2, 1, 4, 4, dtype=torch.long), torch.ones(2, 1, 4, 4))


def test_dice_bce_pos_weight_label_smoothing_and_term_weights():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    target = (torch.rand(2, 2, 4, 4, generator=g) > 0.5).double()
    dice = create("dice", mode="multilabel")(logits, target)
    loss = create("dice_bce", mode="multilabel", pos_weight=[2.0, 0.5], label_smoothing=0.1,
                  bce_weight=0.3, dice_weight=0.7)
    smoothed = target * 0.8 + 0.1  # 1 -> 0.9, 0 -> 0.1
    p = torch.sigmoid(logits)
    pw = torch.tensor([2.0, 0.5], dtype=torch.float64).reshape(1, 2, 1, 1)
    bce = -(pw * smoothed * p.log() + (1 - smoothed) * (1 - p).log()).mean()
    torch.testing.assert_close(loss(logits, target), 0.3 * bce + 0.7 * dice)
    # multiclass label smoothing is torch's cross_entropy(label_smoothing=e), with ignore_index
    classes = torch.randint(0, 2, (2, 4, 4), generator=g)
    classes[0, 0] = 255
    options = dict(mode="multiclass", ignore_index=255)
    expected = (F.cross_entropy(logits, classes, ignore_index=255, label_smoothing=0.2)
                + create("dice", **options)(logits, classes))
    torch.testing.assert_close(create("dice_bce", label_smoothing=0.2, **options)(logits, classes), expected)
    # reduction: sum sums both terms
    summed = create("dice_bce", mode="multiclass", reduction="sum")(logits, classes.clamp(max=1))
    torch.testing.assert_close(summed, F.cross_entropy(logits, classes.clamp(max=1), reduction="sum")
                               + create("dice", mode="multiclass", reduction="sum")(logits, classes.clamp(max=1)))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("regions", ["batch", "image"])
def test_multiclass_dice_bce_cross_entropy_from_the_dice_softmax(reduction, regions):
    """Class indices on logits: the CE comes out of the Dice term's softmax; it is torch's
    cross_entropy in value and gradient, also where the true class's probability underflows."""
    g = torch.Generator().manual_seed(18)
    logits = (torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64) * 3)
    logits[0, :, 0, 0] = torch.tensor([100.0, -100.0, 0.0, 5.0])  # true class 1: log p = -200
    logits.requires_grad_(True)
    target = torch.randint(0, 4, (2, 5, 5), generator=g)
    target[0, 0, 0] = 1
    options = dict(mode="multiclass", regions=regions, reduction=reduction, include_background=False)
    value = create("dice_bce", bce_weight=0.7, **options)(logits, target)
    expected = (0.7 * F.cross_entropy(logits, target, reduction=reduction)
                + create("dice", **options)(logits, target))
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(torch.autograd.grad(value, logits)[0], torch.autograd.grad(expected, logits)[0])


@pytest.mark.parametrize("regions", ["batch", "image"])
def test_dice_bce_reduction_none_is_per_region_dice_plus_that_regions_bce(regions):
    g = torch.Generator().manual_seed(16)
    logits = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    target = (torch.rand(2, 3, 4, 4, generator=g) > 0.5).double()
    options = dict(mode="multilabel", regions=regions)
    dims = (0, 2, 3) if regions == "batch" else (2, 3)
    per_element = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    dice = create("dice", reduction="none", **options)(logits, target)
    loss = create("dice_bce", reduction="none", bce_weight=0.4, dice_weight=1.5, **options)
    value = loss(logits, target)
    assert value.shape == ((3,) if regions == "batch" else (2, 3))
    torch.testing.assert_close(value, 0.4 * per_element.mean(dims) + 1.5 * dice)
    # their mean is the mean reduction
    mean = create("dice_bce", bce_weight=0.4, dice_weight=1.5, **options)(logits, target)
    torch.testing.assert_close(value.mean(), mean)
    # ignored pixels leave each region's BCE mean and its Dice sums
    target[0, 1, 0] = 255
    kept = (target != 255).double()
    clean = target * kept
    bce = (F.binary_cross_entropy_with_logits(logits, clean, reduction="none") * kept).sum(dims) / kept.sum(dims)
    p = torch.sigmoid(logits) * kept
    inter, psum, tsum = (p * clean).sum(dims), p.sum(dims), clean.sum(dims)
    expected = bce + 1 - (2 * inter + 1) / (psum + tsum + 1)
    torch.testing.assert_close(create("dice_bce", reduction="none", ignore_index=255, **options)(logits, target),
                               expected)
    # binary: one region over the batch, shape (1,)
    binary = create("dice_bce", reduction="none")(logits[:, :1], target[:, :1].clamp(max=1))
    assert binary.shape == (1,)
    # finite at logits +-100, perfectly right and perfectly wrong pixels
    extreme = torch.where(clean > 0, 100.0, -100.0)
    extreme[0, 0] *= -1
    extreme.requires_grad_(True)
    value = create("dice_bce", reduction="none", **options)(extreme, clean)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(extreme.grad).all()


@pytest.mark.parametrize("params,message", [
    ({"include_background": False}, "include_background: false needs mode multiclass or multilabel"),
    ({"classes": [0]}, "classes and class_weights need mode multiclass or multilabel"),
    ({"mode": "multiclass", "classes": [1], "include_background": False}, "give classes or include_background"),
    ({"mode": "multiclass", "classes": [1, 1]}, "classes must be distinct"),
    ({"mode": "multiclass", "class_weights": [0.0, 0.0]}, "class_weights must be >= 0 and not all 0"),
    ({"squared_pred": True, "soft_label": True}, "give squared_pred or soft_label"),
    ({"reduction": "none", "empty_target": "skip"}, "reduction: none cannot leave regions out"),
])
def test_bad_combinations_are_one_line_messages(params, message):
    for name in ("dice", "tversky"):
        with pytest.raises(ParamsError, match=message):
            create(name, **params)


def test_bad_dice_bce_options():
    for params, message in [({"mode": "multiclass", "pos_weight": 2.0}, "not multiclass"),
                            ({"pos_weight": 2.0, "from_logits": False}, "needs from_logits: true"),
                            ({"pos_weight": 0.0}, "pos_weight must be > 0"),
                            ({"mode": "multiclass", "reduction": "none"},
                             "reduction: none needs mode binary or multilabel"),
                            ({"mode": "multilabel", "reduction": "none", "include_background": False},
                             "reduction: none scores every channel"),
                            ({"label_smoothing": 0.5}, "label_smoothing")]:
        with pytest.raises(ParamsError, match=message):
            create("dice_bce", **params)
    with pytest.raises(ValueError, match="classes \\[5\\] name a class >= 3"):
        create("dice", mode="multiclass", classes=[5])(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


OPTION_SETS = [dict(include_background=False), dict(class_weights=[1.0, 2.0, 0.5]), dict(classes=[1, 2]),
               dict(squared_pred=True), dict(soft_label=True), dict(log_loss=True), dict(smooth_nr=0.0, smooth_dr=1e-5),
               dict(reduction="sum", regions="image")]


@pytest.mark.parametrize("name", REGION_LOSSES)
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_new_options_give_finite_gradients_at_logits_100(name, options, mode):
    logits = torch.full((2, 3, 4, 4), 100.0)
    logits[:, 1, :2] = -100.0
    logits[:, 2] = -100.0
    logits.requires_grad_(True)
    target = torch.zeros(2, 4, 4, dtype=torch.long) if mode == "multiclass" else torch.zeros(2, 3, 4, 4)
    target[:, 2:] = 1
    value = create(name, mode=mode, **options)(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", REGION_LOSSES)
@pytest.mark.parametrize("options", OPTION_SETS[:6], ids=lambda o: ",".join(o))
def test_new_options_under_float16_autocast_on_cpu(name, options):
    g = torch.Generator().manual_seed(7)
    logits = (torch.randn(2, 3, 64, 64, generator=g) * 4).requires_grad_(True)
    target = torch.randint(0, 3, (2, 64, 64), generator=g)
    loss = create(name, mode="multiclass", **options)
    with torch.autocast("cpu", dtype=torch.float16):
        value = loss(logits.half(), target)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(logits.grad).all()
    torch.testing.assert_close(value, loss(logits.half().float(), target), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", REGION_LOSSES)
@pytest.mark.parametrize("mode,options", [("binary", {}), ("binary", {"log_loss": True}),
                                          ("multilabel", {"include_background": False}),
                                          ("multilabel", {"reduction": "sum", "regions": "image"})])
def test_sigmoid_modes_under_float16_autocast_on_cpu(name, mode, options):
    g = torch.Generator().manual_seed(17)
    channels = 1 if mode == "binary" else 3
    logits = (torch.randn(2, channels, 64, 64, generator=g) * 4).requires_grad_(True)
    target = (torch.rand(2, channels, 64, 64, generator=g) > 0.6).float()
    loss = create(name, mode=mode, **options)
    with torch.autocast("cpu", dtype=torch.float16):
        value = loss(logits.half(), target)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(logits.grad).all()
    torch.testing.assert_close(value, loss(logits.half().float(), target), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", REGION_LOSSES)
def test_gradcheck_with_options(name):
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64)
    for options in ({"soft_label": True}, {"squared_pred": True, "class_weights": [1.0, 0.0, 2.0]},
                    {"log_loss": True, "include_background": False, "regions": "image"}):
        loss = create(name, mode="multilabel", **options)
        assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,))
