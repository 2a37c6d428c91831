"""Every "equals peer X" claim in a loss docstring, computed on both sides: MONAI and
segmentation_models_pytorch from the ``bench`` extra (each test is skipped, visibly,
when its peer is not installed)."""

import pytest
import torch
import torch.nn.functional as F

import torchtk


def create(name, **params):
    return torchtk.registry.create("loss", name, **params)


@pytest.fixture
def monai():
    return pytest.importorskip("monai.losses", reason="MONAI is in the bench extra")


@pytest.fixture
def smp():
    return pytest.importorskip("segmentation_models_pytorch.losses", reason="smp is in the bench extra")


@pytest.fixture
def binary():
    g = torch.Generator().manual_seed(10)
    logits = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64) * 2
    target = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).double()
    return logits, target


@pytest.fixture
def multiclass():
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, 4, (3, 8, 8), generator=g)
    target[:, :, :2] = torch.where(target[:, :, :2] == 3, 0, target[:, :, :2])
    return logits, target


def close(ours, theirs):
    torch.testing.assert_close(ours, theirs.to(ours.dtype).reshape(ours.shape))


# -- dice ---------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [1.0, 1e-5, 0.3])
def test_dice_smooth_s_is_monai_smooth_nr_dr_s(monai, binary, s):
    logits, target = binary
    theirs = monai.DiceLoss(sigmoid=True, batch=True, smooth_nr=s, smooth_dr=s)(logits, target)
    close(create("dice", smooth=s)(logits, target), theirs)
    theirs = monai.DiceLoss(sigmoid=True, batch=True, smooth_nr=s, smooth_dr=2 * s)(logits, target)
    close(create("dice", smooth_nr=s, smooth_dr=2 * s)(logits, target), theirs)


@pytest.mark.parametrize("s", [1.0, 0.5])
def test_dice_smooth_2s_is_smp_smooth_s_and_smooth_s_is_not(smp, binary, s):
    logits, target = binary
    theirs = smp.DiceLoss("binary", smooth=s)(logits, target)
    close(create("dice", smooth=2 * s, empty_target="zero")(logits, target), theirs)
    assert abs(create("dice", smooth=s, empty_target="zero")(logits, target).item() - theirs.item()) > 1e-4


def test_multiclass_dice_options_equal_monai(monai, multiclass):
    logits, target = multiclass
    index = target.unsqueeze(1)
    common = dict(softmax=True, to_onehot_y=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
    close(create("dice", mode="multiclass")(logits, target), monai.DiceLoss(**common)(logits, index))
    close(create("dice", mode="multiclass", include_background=False)(logits, target),
          monai.DiceLoss(include_background=False, **common)(logits, index))
    close(create("dice", mode="multiclass", reduction="none")(logits, target),
          monai.DiceLoss(reduction="none", **common)(logits, index))
    close(create("dice", mode="multiclass", reduction="sum", regions="image")(logits, target),
          monai.DiceLoss(reduction="sum", **{**common, "batch": False})(logits, index))
    close(create("dice", mode="multiclass", squared_pred=True)(logits, target),
          monai.DiceLoss(squared_pred=True, **common)(logits, index))
    # MONAI's weights give the plain mean of w L: ours (sum(w L) / sum(w)) times sum(w) / C
    w = [0.5, 2.0, 1.0, 3.0]
    theirs = monai.DiceLoss(weight=torch.tensor(w), **common)(logits, index)
    close(create("dice", mode="multiclass", class_weights=w)(logits, target) * sum(w) / 4, theirs)
    theirs = monai.DiceLoss(weight=torch.tensor(w[1:]), include_background=False, **common)(logits, index)
    close(create("dice", mode="multiclass", class_weights=w, include_background=False)(logits, target)
          * sum(w[1:]) / 3, theirs)


def test_soft_label_dice_equals_monai(monai):
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    soft = torch.softmax(torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64), 1)
    for name, peer in (("dice", monai.DiceLoss), ("tversky", monai.TverskyLoss)):
        theirs = peer(softmax=True, batch=True, smooth_nr=1.0, smooth_dr=1.0, soft_label=True)(logits, soft)
        close(create(name, mode="multiclass", soft_label=True)(logits, soft), theirs)


def test_multiclass_dice_options_equal_smp(smp, multiclass):
    logits, target = multiclass
    close(create("dice", mode="multiclass", smooth=1.0, empty_target="zero")(logits, target),
          smp.DiceLoss("multiclass", smooth=0.5)(logits, target))
    close(create("dice", mode="multiclass", smooth=1.0, empty_target="zero", classes=[1, 3])(logits, target),
          smp.DiceLoss("multiclass", smooth=0.5, classes=[1, 3])(logits, target))
    close(create("dice", mode="multiclass", smooth=1.0, empty_target="zero", log_loss=True)(logits, target),
          smp.DiceLoss("multiclass", smooth=0.5, log_loss=True)(logits, target))
    w = [0.5, 2.0, 1.0, 3.0]
    close(create("dice", mode="multiclass", smooth=1.0, empty_target="zero", class_weights=w)(logits, target),
          smp.DiceLoss("multiclass", smooth=0.5, class_weights=w)(logits, target))
    close(create("dice", mode="multiclass", smooth=1.0, empty_target="zero", ignore_index=3)(logits, target),
          smp.DiceLoss("multiclass", smooth=0.5, ignore_index=3)(logits, target))


# -- iou, tversky ---------------------------------------------------------------------------

@pytest.mark.parametrize("s", [1.0, 0.2])
def test_iou_smooth_half_s_is_monai_jaccard_smooth_s(monai, binary, s):
    logits, target = binary
    theirs = monai.DiceLoss(jaccard=True, sigmoid=True, batch=True, smooth_nr=s, smooth_dr=s)(logits, target)
    close(create("iou", smooth=s / 2)(logits, target), theirs)
    assert abs(create("iou", smooth=s)(logits, target).item() - theirs.item()) > 1e-4


@pytest.mark.parametrize("s", [1.0, 0.2])
def test_iou_smooth_s_is_smp_jaccard_smooth_s(smp, binary, multiclass, s):
    logits, target = binary
    close(create("iou", smooth=s, empty_target="zero")(logits, target), smp.JaccardLoss("binary", smooth=s)(logits, target))
    logits, target = multiclass
    close(create("iou", mode="multiclass", smooth=s, empty_target="zero")(logits, target),
          smp.JaccardLoss("multiclass", smooth=s)(logits, target))


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (0.3, 0.7)])
def test_tversky_equals_monai_and_smp(monai, smp, binary, multiclass, alpha, beta):
    logits, target = binary
    theirs = monai.TverskyLoss(sigmoid=True, batch=True, alpha=alpha, beta=beta, smooth_nr=1.0, smooth_dr=1.0)
    close(create("tversky", alpha=alpha, beta=beta)(logits, target), theirs(logits, target))
    theirs = smp.TverskyLoss("binary", smooth=1.0, alpha=alpha, beta=beta)
    close(create("tversky", alpha=alpha, beta=beta, empty_target="zero")(logits, target), theirs(logits, target))
    logits, target = multiclass
    theirs = monai.TverskyLoss(softmax=True, to_onehot_y=True, batch=True, alpha=alpha, beta=beta,
                               smooth_nr=0.5, smooth_dr=2.0, include_background=False)
    close(create("tversky", mode="multiclass", alpha=alpha, beta=beta, smooth_nr=0.5, smooth_dr=2.0,
                 include_background=False)(logits, target), theirs(logits, target.unsqueeze(1)))


@pytest.mark.parametrize("gamma", [0.75, 2.0])
def test_focal_tversky_gamma_per_region_against_smp_power_of_the_mean(smp, binary, multiclass, gamma):
    """gamma acts on each region's loss (the tutorial's and Abraham & Khan's per-class form);
    smp raises the mean over classes to gamma. One region (binary): the same value."""
    logits, target = binary
    theirs = smp.TverskyLoss("binary", smooth=1.0, gamma=gamma)(logits, target)
    close(create("tversky", gamma=gamma, empty_target="zero")(logits, target), theirs)
    logits, target = multiclass
    logits = logits + torch.tensor([3.0, 0.0, -1.0, 0.0], dtype=logits.dtype).reshape(1, 4, 1, 1)  # classes apart
    options = dict(mode="multiclass", empty_target="zero")
    per_class = create("tversky", reduction="none", **options)(logits, target)
    theirs = smp.TverskyLoss("multiclass", smooth=1.0, gamma=gamma)(logits, target)
    close(per_class.mean() ** gamma, theirs)
    close(create("tversky", gamma=gamma, **options)(logits, target), (per_class ** gamma).mean())
    assert abs((per_class ** gamma).mean().item() - theirs.item()) > 1e-3


# -- dice_bce -------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.3, 1.7)])
def test_dice_bce_equals_monai_dice_ce(monai, binary, multiclass, weights):
    ce, dice = weights
    logits, target = binary
    theirs = monai.DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0, lambda_ce=ce, lambda_dice=dice)
    close(create("dice_bce", bce_weight=ce, dice_weight=dice)(logits, target), theirs(logits, target))
    logits, target = multiclass
    theirs = monai.DiceCELoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=1.0, smooth_dr=1.0,
                              lambda_ce=ce, lambda_dice=dice, include_background=False, label_smoothing=0.1)
    ours = create("dice_bce", mode="multiclass", bce_weight=ce, dice_weight=dice, include_background=False,
                  label_smoothing=0.1)
    close(ours(logits, target), theirs(logits, target.unsqueeze(1)))


def test_dice_bce_equals_smp_soft_bce_plus_dice(smp, binary):
    logits, target = binary
    bce = smp.SoftBCEWithLogitsLoss(smooth_factor=0.1, pos_weight=torch.tensor(2.0, dtype=torch.float64))
    theirs = bce(logits, target) + smp.DiceLoss("binary", smooth=0.5)(logits, target)
    ours = create("dice_bce", empty_target="zero", label_smoothing=0.1, pos_weight=2.0)
    close(ours(logits, target), theirs)


# -- focal, soft_bce ------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"normalized": True}, {"reduced_threshold": 0.5},
                                     {"normalized": True, "reduced_threshold": 0.3, "gamma": 3.0}])
def test_focal_options_equal_smp(smp, binary, multiclass, options):
    logits, target = binary
    close(create("focal", **options)(logits, target), smp.FocalLoss("binary", alpha=0.25, **options)(logits, target))
    # smp's FocalLoss("multiclass") is one-vs-rest sigmoid focal; its softmax focal is the function
    from segmentation_models_pytorch.losses._functional import softmax_focal_loss_with_logits

    logits, target = multiclass
    close(create("focal", mode="multiclass", alpha=None, **options)(logits, target),
          softmax_focal_loss_with_logits(logits, target, **{"gamma": 2.0, **options}))


def test_multilabel_focal_class_weights_equal_smp_and_monai(smp, monai):
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    target = (torch.rand(2, 3, 5, 5, generator=g) > 0.5).double()
    w = [1.0, 3.0, 0.5]
    ours = create("focal", mode="multilabel", class_weights=w)(logits, target)
    close(ours, smp.FocalLoss("multilabel", alpha=0.25, class_weights=w)(logits, target))
    theirs = monai.FocalLoss(alpha=0.25, gamma=2.0, weight=w)(logits, target)  # the plain mean of w l
    close(ours * sum(w) / 3, theirs)
    theirs = monai.FocalLoss(alpha=0.25, gamma=2.0, include_background=False)(logits, target)
    close(create("focal", mode="multilabel", include_background=False)(logits, target), theirs)


def test_soft_bce_equals_smp_soft_bce_with_logits(smp, binary):
    logits, target = binary
    target = target.clone()
    target[0, 0, 0] = -100
    theirs = smp.SoftBCEWithLogitsLoss(smooth_factor=0.1, ignore_index=-100, reduction="sum")
    ours = create("soft_bce", label_smoothing=0.1, ignore_index=-100, reduction="sum")
    close(ours(logits, target), theirs(logits, target))
    # smp's mean divides by every element, ignored ones included
    theirs = smp.SoftBCEWithLogitsLoss(smooth_factor=0.1, ignore_index=-100)(logits, target)
    close(ours(logits, target) / target.numel(), theirs)
    clean = target.clamp(min=0)
    close(create("soft_bce", pos_weight=1.5)(logits, clean),
          smp.SoftBCEWithLogitsLoss(pos_weight=torch.tensor(1.5, dtype=torch.float64))(logits, clean))


def test_multiclass_focal_against_monai_softmax_focal(monai, multiclass):
    """MONAI's FocalLoss(use_softmax=True) averages over classes as well as pixels (ours
    times 1/C), its scalar alpha weighs background 1 - alpha and the rest alpha (ours: an
    alpha list), and its include_background=False drops channel 0 before the softmax (ours
    keeps the full softmax, as MONAI's DiceLoss does, and leaves out background pixels)."""
    logits, target = multiclass
    n, c = logits.shape[:2]
    index = target.unsqueeze(1)
    peer = lambda **options: monai.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0, **options)  # noqa: E731
    close(create("focal", mode="multiclass", alpha=None)(logits, target) / c, peer()(logits, index))
    close(create("focal", mode="multiclass", alpha=[0.75, 0.25, 0.25, 0.25])(logits, target) / c,
          peer(alpha=0.25)(logits, index))
    # without background: MONAI's value is ours on logits[:, 1:] with background pixels left out,
    # summed and divided by every remaining class element
    shifted = torch.where(target == 0, -1, target - 1)
    on_foreground = create("focal", mode="multiclass", alpha=None, ignore_index=-1, reduction="sum")
    theirs = peer(include_background=False)(logits, index)
    close(on_foreground(logits[:, 1:], shifted) / (n * (c - 1) * target[0].numel()), theirs)
    ours = create("focal", mode="multiclass", alpha=None, include_background=False)(logits, target)
    assert abs(ours.item() - theirs.item()) > 1e-3


def test_binary_focal_equals_monai(monai, binary):
    logits, target = binary
    close(create("focal")(logits, target), monai.FocalLoss(alpha=0.25, gamma=2.0)(logits, target))


def test_peer_fixtures_really_ran_when_installed():
    """Guard against the whole file skipping silently where the bench extra is installed."""
    import importlib.util

    if importlib.util.find_spec("monai") is None or importlib.util.find_spec("segmentation_models_pytorch") is None:
        pytest.skip("bench extra not installed: the peer comparisons above were skipped")
    import monai.losses  # noqa: F401
    import segmentation_models_pytorch.losses  # noqa: F401
