"""The CPU binary cross entropy on logits (``_logistic``) that soft_bce, dice_bce and
focal use: values and gradients against torch's function and against float64 log1p,
over the whole logit range."""

import pytest
import torch
import torch.nn.functional as F

from torchtk.plugins.losses._logistic import (
    binary_cross_entropy_with_logits,
    fast_here,
    log1p_exp_neg_abs,
)

WIDE_RANGE = torch.cat([torch.linspace(-120, 120, 24001), torch.tensor([0.0, -0.0, 1e-8, -1e-30, 17.0, 88.0, 104.0])])


def test_log1p_of_exp_is_within_two_ulp_of_float64_log1p():
    x = WIDE_RANGE
    exact = x.double().abs().neg().exp().log1p()
    ours = log1p_exp_neg_abs(x).double()
    normal = exact > torch.finfo(torch.float32).tiny  # below it float32 itself cannot hold the value
    relative = ((ours - exact).abs() / exact)[normal]
    assert relative.max() <= 2 * torch.finfo(torch.float32).eps
    x64 = WIDE_RANGE.double()
    relative = (log1p_exp_neg_abs(x64) - x64.abs().neg().exp().log1p()).abs() / x64.abs().neg().exp().log1p()
    assert relative.max() <= 2 * torch.finfo(torch.float64).eps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_values_and_gradients_equal_torch(dtype, reduction, weighted):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([WIDE_RANGE[::40], torch.randn(500, generator=g) * 3]).to(dtype)
    for target in (torch.rand(x.shape, generator=g), (torch.rand(x.shape, generator=g) > 0.5).float()):
        t = target.to(dtype)
        weight = (torch.rand(x.shape, generator=g) > 0.2).to(dtype) if weighted else None
        ours_x, ours_t = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
        torch_x, torch_t = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
        ours = binary_cross_entropy_with_logits(ours_x, ours_t, weight=weight, reduction=reduction)
        theirs = F.binary_cross_entropy_with_logits(torch_x, torch_t, weight=weight, reduction=reduction)
        upstream = torch.rand(ours.shape, generator=g, dtype=dtype)
        ours_grads = torch.autograd.grad(ours, (ours_x, ours_t), upstream)
        theirs_grads = torch.autograd.grad(theirs, (torch_x, torch_t), upstream)
        # torch's (1 - t) x - log_sigmoid(x) cancels for x << 0, t = 0 (ours is exact there): 1 ulp of |x|
        tolerance = 2 * torch.finfo(dtype).eps * 120
        torch.testing.assert_close(ours, theirs, atol=tolerance, rtol=1e-6)
        for got, want in zip(ours_grads, theirs_grads):
            torch.testing.assert_close(got, want)


def test_exact_where_torch_cancels():
    """x = -40, t = 0: the loss is log(1 + e^-40) = 4.2e-18; torch's float64 formula gives 0."""
    x, t = torch.tensor([-40.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    assert binary_cross_entropy_with_logits(x, t).item() == pytest.approx(4.248354255291589e-18, rel=1e-12)


def test_gradcheck_and_finite_at_plus_minus_100():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, 3, dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(lambda a, b: binary_cross_entropy_with_logits(a, b, w, reduction=reduction),
                                        (x, t))
    x = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    value = binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    value.backward()
    assert value.item() == pytest.approx(50.0) and torch.isfinite(x.grad).all()


def test_torch_keeps_what_the_cpu_path_does_not_take():
    half = torch.randn(8).half()
    assert not fast_here(half) and fast_here(half.float())
    target = torch.rand(8).half()
    assert torch.equal(binary_cross_entropy_with_logits(half, target), F.binary_cross_entropy_with_logits(half, target))
    x, t = torch.randn(2, 3), torch.rand(2, 3)
    pos_weight = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight),
                       F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight))
