"""The torch side of the region losses (dice, dice_bce, iou, tversky).

Imported by ``torchtk.plugins.losses.segmentation`` when one of them is built, never
when the catalog is listed. Every region loss is a function of three sums per region
(a region is one class over the whole batch, or one class of one image):

    I = sum(p * t)     P = sum(p)     T = sum(t)

so true positives are ``I``, false positives ``P - I`` and false negatives ``T - I``.
:class:`RegionSums` computes them with a hand-written backward (one fused kernel
instead of autograd's chain), and all sums run in float32 (float64 for float64 inputs)
with autocast disabled, so a 512x512 float16 mask cannot overflow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchtk.plugins.losses._inputs import LossInputError, class_indices, same_shape, shape_text
from torchtk.plugins.losses._logistic import bce_terms, binary_cross_entropy_with_logits, fast_here


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else is summed in float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for the loss arithmetic, if it is on for this tensor's device."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


class RegionSums(torch.autograd.Function):
    """``(I, P, T)`` per region from probabilities ``p`` and targets ``t``.

    ``t`` must already be zero where ``mask`` is zero. With ``dims=None`` both inputs are
    1-D and everything is one region (``I`` is then a dot product, no temporary).
    Backward: ``dL/dp = dL/dI * t + dL/dP * mask`` and ``dL/dt = dL/dI * p + dL/dT``,
    two elementwise kernels instead of autograd's product, sum and accumulation chain.
    """

    @staticmethod
    def forward(ctx: Any, prob: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor],
                dims: Optional[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if dims is None:
            inter, pred, true = torch.dot(prob, target), prob.sum(), target.sum()
        else:
            inter = (prob * target).sum(dims)
            pred = (prob if mask is None else prob * mask).sum(dims)
            true = target.sum(dims)
        ctx.save_for_backward(prob, target, mask)
        ctx.dims = dims
        return inter, pred, true

    @staticmethod
    def backward(ctx: Any, g_inter: torch.Tensor, g_pred: torch.Tensor, g_true: torch.Tensor) -> tuple:
        prob, target, mask = ctx.saved_tensors
        dims = ctx.dims
        if dims is None:
            def spread(g: torch.Tensor) -> torch.Tensor:
                return g
        else:
            shape = [1 if d in dims else s for d, s in enumerate(prob.shape)]

            def spread(g: torch.Tensor) -> torch.Tensor:
                return g.reshape(shape)
        grad_prob = grad_target = None
        if ctx.needs_input_grad[0]:
            # (t * gI) + gP as two kernels: addcmul with broadcast scalars is 2-3x slower on CPU
            grad_prob = target * spread(g_inter)
            grad_prob = grad_prob.add_(spread(g_pred)) if mask is None else grad_prob.addcmul_(mask, spread(g_pred))
            grad_prob = grad_prob.expand_as(prob)
        if ctx.needs_input_grad[1]:
            grad_target = (prob * spread(g_inter)).add_(spread(g_true)).expand_as(target)
        return grad_prob, grad_target, None, None


class SigmoidSums(torch.autograd.Function):
    """``(I, P, T)`` of ``p = sigmoid(x)`` over 1-D ``x`` and ``t``, one region: the
    binary fast path, with the sigmoid's backward folded in
    (``dL/dx = (dL/dI t + dL/dP) p (1 - p)``) so autograd records one node, not three."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prob = torch.sigmoid(x)
        ctx.save_for_backward(prob, target)
        return torch.dot(prob, target), prob.sum(), target.sum()

    @staticmethod
    def backward(ctx: Any, g_inter: torch.Tensor, g_pred: torch.Tensor, g_true: torch.Tensor) -> tuple:
        prob, target = ctx.saved_tensors
        grad_x = grad_target = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.sigmoid_backward((target * g_inter).add_(g_pred), prob)
        if ctx.needs_input_grad[1]:
            grad_target = (prob * g_inter).add_(g_true)
        return grad_x, grad_target


def host_scalars(*values: torch.Tensor) -> tuple:
    """0-dim CPU tensors as Python floats (reading them costs no device sync there), so
    the score's scalar arithmetic is a few float operations instead of a dozen dispatched
    tensor ops; on other devices the tensors stay where they are."""
    if values[0].device.type == "cpu":
        return tuple(value.item() for value in values)
    return values


class BinaryRegionLoss(torch.autograd.Function):
    """The binary fast path in one autograd node: ``dice_weight * (1 - S(I, P, T))`` of
    ``p = sigmoid(x)`` over 1-D ``x`` and ``t``, with the score's partial derivatives in
    closed form (``score_grads`` of the loss), so no scalar op of the formula records a
    node; ``bce_weight > 0`` adds that times the mean BCE with logits (``dice_bce``), whose
    gradient ``(p - t) / n`` shares the same sigmoid. Without the BCE term the gradient
    ``(a t + b) p (1 - p)`` is written into the forward's ``p`` buffer, which nothing else
    holds (one input-sized allocation per call; a retained graph's second backward
    recomputes ``p``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, target: torch.Tensor, loss: "RegionLoss",
                dice_weight: float = 1.0, bce_weight: float = 0.0) -> torch.Tensor:
        prob = torch.sigmoid(x)
        inter, pred, true = host_scalars(torch.dot(prob, target), prob.sum(), target.sum())
        score, d_inter, d_pred, d_true = loss.score_grads(inter, pred, true)
        value = dice_weight * (1 - score)
        ctx.bce = bce_weight / max(x.numel(), 1) if bce_weight else 0.0
        if ctx.bce:
            total = (bce_terms(x, target).sum() if fast_here(x)
                     else F.binary_cross_entropy_with_logits(x, target, reduction="sum"))
            value = value + ctx.bce * total
        ctx.save_for_backward(x, target)
        ctx.prob = prob
        ctx.d_inter, ctx.d_pred, ctx.d_true = -dice_weight * d_inter, -dice_weight * d_pred, -dice_weight * d_true
        return torch.as_tensor(value, dtype=x.dtype) if isinstance(value, float) else value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        x, target = ctx.saved_tensors
        prob, ctx.prob = ctx.prob, None
        if prob is None:  # the graph was retained and this is a later backward
            prob = torch.sigmoid(x)
        (g,) = host_scalars(grad)
        scale, shift = g * ctx.d_inter, g * ctx.d_pred
        grad_x = grad_target = None
        if ctx.needs_input_grad[1]:  # first: it needs p
            grad_target = affine(prob, scale, g * ctx.d_true)
            if ctx.bce:
                grad_target = add_scaled(grad_target, x, -g * ctx.bce)
        if not ctx.needs_input_grad[0]:
            return None, grad_target, None, None, None
        if not ctx.bce and isinstance(shift, float) and shift != 0:
            # p <- p (1 - p), then shift p + scale p t, in place
            grad_x = prob.addcmul_(prob, prob, value=-1).mul_(shift).addcmul_(prob, target, value=scale / shift)
        else:
            grad_x = affine(target, scale, shift)
            grad_x = torch.ops.aten.sigmoid_backward.grad_input(grad_x, prob, grad_input=grad_x)
            if ctx.bce:
                grad_x = add_scaled(add_scaled(grad_x, prob, g * ctx.bce), target, -g * ctx.bce)
        return grad_x, grad_target, None, None, None


def affine(tensor: torch.Tensor, scale: Any, shift: Any) -> torch.Tensor:
    """``scale * tensor + shift``: one pass with host floats (``add`` with ``alpha``), two otherwise."""
    if isinstance(scale, float):
        return torch.add(torch.tensor(shift, dtype=tensor.dtype), tensor, alpha=scale)
    return torch.mul(tensor, scale).add_(shift)


def add_scaled(total: torch.Tensor, tensor: torch.Tensor, scale: Any) -> torch.Tensor:
    """``total += scale * tensor`` in place, without a temporary for host floats."""
    if isinstance(scale, float):
        return total.add_(tensor, alpha=scale)
    return total.add_(tensor * scale)


class IndexSums(torch.autograd.Function):
    """``(I, P, T)`` per class (``image=False``: over the batch) or per class and image
    from probabilities ``(N, C, S)`` and class indices ``(N, S)``, without building the
    one-hot: ``I`` and ``T`` are scatter-adds of the true class's probability and of 1,
    and the backward adds ``dL/dI`` only at the true class (a scatter) to ``dL/dP``."""

    @staticmethod
    def forward(ctx: Any, prob: torch.Tensor, indices: torch.Tensor,
                image: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, c = prob.shape[:2]
        index = indices.unsqueeze(1)
        picked = prob.gather(1, index).squeeze(1)
        inter = prob.new_zeros(n, c).scatter_add_(1, indices, picked)
        true = prob.new_zeros(n, c).scatter_add_(1, indices, torch.ones_like(picked))
        pred = prob.sum(2)
        ctx.save_for_backward(index)
        ctx.image, ctx.shape = image, prob.shape
        if image:
            return inter, pred, true
        return inter.sum(0), pred.sum(0), true.sum(0)

    @staticmethod
    def backward(ctx: Any, g_inter: torch.Tensor, g_pred: torch.Tensor, g_true: torch.Tensor) -> tuple:
        (index,) = ctx.saved_tensors
        n, c, s = ctx.shape
        if not ctx.image:
            g_inter, g_pred = g_inter.expand(n, c), g_pred.expand(n, c)
        grad = g_pred.unsqueeze(2).expand(n, c, s).contiguous()
        grad.scatter_add_(1, index, g_inter.unsqueeze(2).expand(n, c, s).gather(1, index))
        return grad, None, None


class SoftmaxIndexSums(torch.autograd.Function):
    """:class:`IndexSums` of ``p = softmax(x, 1)`` with the softmax's backward folded in.

    With ``g = dL/dP_c + dL/dI_c [t = c]`` per pixel and class, the softmax backward is
    ``p_k (g_k - A)`` with ``A = sum_c p_c g_c = p · dL/dP + p_t dL/dI_t``: one batched
    matrix product and two elementwise passes, instead of torch's softmax backward over a
    strided class axis (the slowest kernel of the multiclass losses on CPU). The gradient
    is written into the forward's probability buffer, which nothing else holds (one
    logits-sized allocation per call instead of two: a fresh one costs page faults on first
    touch); a second backward through a retained graph recomputes the softmax.

    ``log_p=True`` also returns ``log p_t`` per pixel (N, S) for ``dice_bce``'s cross
    entropy, from the same softmax: ``x_t - max x + log(max p)`` (``max p >= 1/C``, so it
    stays exact where ``p_t`` underflows). Its gradient ``g_l ([c = t] - p)`` joins the
    same two passes (``A += g_l``, and ``g_l`` scattered with ``p_t dL/dI_t``).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, indices: torch.Tensor, image: bool,
                log_p: bool = False) -> tuple[torch.Tensor, ...]:
        n, c = x.shape[:2]
        prob = torch.softmax(x, 1)
        index = indices.unsqueeze(1)
        picked = prob.gather(1, index).squeeze(1)
        inter = prob.new_zeros(n, c).scatter_add_(1, indices, picked)
        offsets = indices + torch.arange(0, n * c, c, device=indices.device).unsqueeze(1)
        true = torch.bincount(offsets.reshape(-1), minlength=n * c).reshape(n, c).to(prob.dtype)
        pred = prob.sum(2)
        ctx.save_for_backward(x, indices, picked)
        ctx.prob, ctx.image = prob, image
        sums = (inter, pred, true) if image else (inter.sum(0), pred.sum(0), true.sum(0))
        if not log_p:
            return sums
        log_p_t = x.gather(1, index).sub_(x.amax(1, keepdim=True)).add_(prob.amax(1, keepdim=True).log_())
        return (*sums, log_p_t.squeeze(1))

    @staticmethod
    def backward(ctx: Any, g_inter: torch.Tensor, g_pred: torch.Tensor, g_true: torch.Tensor,
                 g_log_p: Optional[torch.Tensor] = None) -> tuple:
        x, indices, picked = ctx.saved_tensors
        prob, ctx.prob = ctx.prob, None
        if prob is None:  # the graph was retained and this is a later backward
            prob = torch.softmax(x, 1)
        n, c = prob.shape[:2]
        if not ctx.image:
            g_inter, g_pred = g_inter.expand(n, c), g_pred.expand(n, c)
        g_pred = g_pred.to(prob.dtype)
        true_grad = picked * g_inter.gather(1, indices)  # p_t dL/dI_t, (N, S)
        mean = torch.bmm(g_pred.unsqueeze(1), prob).squeeze(1).add_(true_grad)  # A, (N, S)
        if g_log_p is not None:
            mean, true_grad = mean.add_(g_log_p), true_grad.add_(g_log_p)
        scale_in_place(prob, g_pred, mean)
        return prob.scatter_add_(1, indices.unsqueeze(1), true_grad.unsqueeze(1)), None, None, None


def scale_in_place(prob: torch.Tensor, per_class: torch.Tensor, per_pixel: torch.Tensor) -> None:
    """``prob *= per_class[:, :, None] - per_pixel[:, None]`` without a temporary of
    ``prob``'s size: one class at a time for the usual few classes."""
    if prob.shape[1] > 16:
        prob.mul_(per_class.unsqueeze(2) - per_pixel.unsqueeze(1))
        return
    factor = torch.empty_like(per_pixel)
    for k in range(prob.shape[1]):
        prob[:, k].mul_(torch.sub(per_class[:, k:k + 1], per_pixel, out=factor))


@dataclass
class Prepared:
    """A batch in the layout every region loss uses: ``(N, C, S)`` with S the pixels."""

    logits: torch.Tensor          # the output in compute dtype (logits, or probabilities)
    prob: Optional[torch.Tensor]  # probabilities (None: multiclass logits summed by SoftmaxIndexSums)
    target: Optional[torch.Tensor]  # per-class targets, zero at ignored pixels (None: see dense_target)
    mask: Optional[torch.Tensor]  # 1 at pixels that count, 0 at ignored ones (None: all count)
    indices: Optional[torch.Tensor] = None  # multiclass class indices (N, S), ignore_index kept

    def dense_target(self) -> torch.Tensor:
        """The per-class targets; multiclass indices without ignored pixels are turned
        into a one-hot only when an option needs it (the plain sums scatter instead)."""
        if self.target is None:
            self.target = torch.zeros_like(self.logits).scatter_(1, self.indices.unsqueeze(1), 1.0)
        return self.target


class RegionLoss(nn.Module):
    """Shared machinery of the region losses: layout, activation, ``ignore_index``, the
    channels scored, region sums, the score-to-loss step, class weights, ``empty_target``
    and the reduction. Subclasses give ``region_score``."""

    loss_name = "region"

    def __init__(self, mode: str = "binary", from_logits: bool = True, smooth: float = 1.0,
                 smooth_nr: Optional[float] = None, smooth_dr: Optional[float] = None,
                 ignore_index: Optional[int] = None, regions: str = "batch", reduction: str = "mean",
                 empty_target: str = "penalize_fp", include_background: bool = True,
                 classes: Optional[list[int]] = None, class_weights: Optional[list[float]] = None,
                 squared_pred: bool = False, soft_label: bool = False, log_loss: bool = False) -> None:
        super().__init__()
        self.mode, self.from_logits, self.smooth = mode, from_logits, smooth
        self.smooth_nr = smooth if smooth_nr is None else smooth_nr
        self.smooth_dr = smooth if smooth_dr is None else smooth_dr
        self.ignore_index, self.regions, self.reduction = ignore_index, regions, reduction
        self.empty_target, self.include_background, self.classes = empty_target, include_background, classes
        self.class_weights, self.squared_pred, self.soft_label = class_weights, squared_pred, soft_label
        self.log_loss = log_loss
        self._weights: dict = {}
        # what the defaults allow: the fused sums and the one-line mean, with no per-call checks
        self._plain_sums = not (squared_pred or soft_label)
        self._plain_reduce = reduction == "mean" and class_weights is None and empty_target == "penalize_fp"
        self._all_channels = include_background and classes is None
        self._fast = mode == "binary" and regions == "batch" and ignore_index is None and self._plain_sums
        # one node for the whole loss: needs the closed-form score derivatives and nothing after 1 - score
        self._one_node = (self._fast and from_logits and self._plain_reduce and not log_loss
                          and self.smooth_dr > 0 and type(self).score_grads is not RegionLoss.score_grads)

    def extra_repr(self) -> str:
        text = (f"mode={self.mode!r}, from_logits={self.from_logits}, smooth_nr={self.smooth_nr}, "
                f"smooth_dr={self.smooth_dr}, ignore_index={self.ignore_index}, regions={self.regions!r}, "
                f"reduction={self.reduction!r}, empty_target={self.empty_target!r}")
        for name in ("include_background", "classes", "class_weights", "squared_pred", "soft_label", "log_loss"):
            value, default = getattr(self, name), (True if name == "include_background" else
                                                   (False if name in ("squared_pred", "soft_label", "log_loss") else None))
            if value != default:
                text += f", {name}={value}"
        return text

    # -- layout ---------------------------------------------------------------------

    def prepare(self, output: torch.Tensor, target: torch.Tensor) -> Prepared:
        name = f"{self.loss_name} ({self.mode})"
        if not output.is_floating_point():
            raise LossInputError(f"loss {name!r}: output dtype is {output.dtype}; expected floating-point "
                                 f"{'logits' if self.from_logits else 'probabilities'} (float16/32/64)")
        dtype = compute_dtype(output)
        if self.mode == "multiclass":
            if class_indices(name, output, target):
                n, c = output.shape[:2]
                x = output.to(dtype).reshape(n, c, -1)
                t = target.reshape(n, -1)
                if t.dtype != torch.int64:
                    t = t.long()  # uint8/int32 label maps: scatter and nll_loss need int64
                indices = t
                if self.ignore_index is not None:
                    valid = t != self.ignore_index
                    mask = valid.unsqueeze(1).to(dtype)
                    onehot = torch.zeros_like(x).scatter_(1, t.masked_fill(~valid, 0).unsqueeze(1), mask)
                else:
                    mask, onehot = None, None  # built on demand by dense_target
                    if self.from_logits and self._plain_sums:
                        return Prepared(x, None, None, None, indices)  # SoftmaxIndexSums takes the logits
                prob = torch.softmax(x, 1) if self.from_logits else x
                return Prepared(x, prob, onehot, mask, indices)
            n, c = output.shape[:2]
            x = output.to(dtype).reshape(n, c, -1)
            prob = torch.softmax(x, 1) if self.from_logits else x
            return Prepared(x, prob, target.to(dtype).reshape(n, c, -1), None)  # one-hot, integer ones cast
        if self.mode == "multilabel":
            if output.shape != target.shape or output.ndim < 2:
                raise LossInputError(
                    f"loss {name!r}: output shape {shape_text(output)} and target shape {shape_text(target)} "
                    "do not fit; expected a target of the output's shape (N, C, ...)")
            n, c = output.shape[:2]
        else:
            output, target = same_shape(name, output, target)
            n, c = (output.shape[0] if output.ndim else 1), 1
        x = output.to(dtype).reshape(n, c, -1)
        t = target.reshape(n, c, -1)
        mask = None
        if self.ignore_index is not None:
            valid = t != self.ignore_index
            mask = valid.to(dtype)
            t = t.masked_fill(~valid, 0)
        t = t.to(dtype)
        prob = torch.sigmoid(x) if self.from_logits else x
        return Prepared(x, prob, t, mask)

    def channels(self, channel_count: int) -> Optional[Any]:
        """The channels scored: all (None), all but 0, or ``classes``."""
        if self._all_channels:
            return None
        if self.classes is None:
            return slice(1, None)
        if max(self.classes) >= channel_count:
            raise LossInputError(f"loss {self.loss_name!r}: classes {self.classes} name a class >= {channel_count}, "
                                 f"the number of classes of the output")
        return self.classes

    def sums(self, batch: Prepared) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if batch.target is None and self._plain_sums:
            image = self.regions == "image"
            if batch.prob is None:
                sums = SoftmaxIndexSums.apply(batch.logits, batch.indices, image)
            else:
                sums = IndexSums.apply(batch.prob, batch.indices, image)
            return self.scored(sums, batch.logits.shape[1])
        prob, target, mask = batch.prob, batch.dense_target(), batch.mask
        if not self._all_channels:
            chosen = self.channels(prob.shape[1])
            prob, target = prob[:, chosen], target[:, chosen]
            if mask is not None and mask.shape[1] > 1:
                mask = mask[:, chosen]
        dims = (0, 2) if self.regions == "batch" else (2,)
        if not self._plain_sums:
            return self.option_sums(prob, target, mask, dims)
        if self.regions == "batch" and mask is None and prob.shape[1] == 1:
            return RegionSums.apply(prob.reshape(-1), target.reshape(-1), None, None)
        return RegionSums.apply(prob, target, mask, dims)

    def scored(self, sums: tuple, channel_count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The region sums of the channels scored (all, all but 0, or ``classes``)."""
        if self._all_channels:
            return tuple(sums)
        chosen = self.channels(channel_count)
        return tuple(value[..., chosen] for value in sums)

    def option_sums(self, prob: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor],
                    dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MONAI's variants (plain autograd): ``squared_pred`` sums p² and t² in the
        denominator; ``soft_label`` takes ``I = (P + T - sum|p - t|) / 2``, which equals
        ``sum(p t)`` for 0/1 targets and stays correct for soft ones."""
        kept = prob if mask is None else prob * mask
        if self.squared_pred:
            return (prob * target).sum(dims), (kept * prob).sum(dims), (target * target).sum(dims)
        pred, true = kept.sum(dims), target.sum(dims)
        difference = (kept - target).abs().sum(dims)  # target is 0 wherever mask is
        return (pred + true - difference) / 2, pred, true

    # -- scores ---------------------------------------------------------------------

    def ratio(self, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        """``num / den``; a region with nothing predicted and nothing true (possible only
        with ``smooth_dr=0``) scores 1, a perfect empty prediction."""
        if self.smooth_dr > 0:
            return num / den
        return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.ones_like(den))

    def region_score(self, inter: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_grads(self, inter: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> tuple:
        """``(S, dS/dI, dS/dP, dS/dT)`` in closed form, for the one-node binary path."""
        raise NotImplementedError

    def region_loss(self, inter: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """``1 - score``, or ``-log(max(score, 1e-7))`` with ``log_loss`` (smp's rule)."""
        score = self.region_score(inter, pred, true)
        return -score.clamp_min(1e-7).log() if self.log_loss else 1 - score

    def weights(self, loss: torch.Tensor, channel_count: int) -> Optional[torch.Tensor]:
        """The class weights of the scored channels, as a tensor like ``loss`` (cached)."""
        if self.class_weights is None:
            return None
        if len(self.class_weights) != channel_count:
            raise LossInputError(f"loss {self.loss_name!r}: class_weights has {len(self.class_weights)} weights "
                                 f"but the output has {channel_count} classes")
        key = (loss.device, loss.dtype, channel_count)
        if key not in self._weights:
            weight = torch.tensor(self.class_weights, dtype=loss.dtype, device=loss.device)
            chosen = self.channels(channel_count)
            self._weights[key] = weight if chosen is None else weight[chosen]
        return self._weights[key]

    def reduce(self, loss: torch.Tensor, true: torch.Tensor, channel_count: int = 1) -> torch.Tensor:
        """Per-region losses (C,) or (N, C) to the result. Weights w multiply each class's
        loss and the mean divides by the summed weights of the regions it counts:
        ``sum(w L) / sum(w)``, smp's rule (``skip`` counts present regions only)."""
        if self._plain_reduce:
            return loss if loss.ndim == 0 else loss.mean()
        factor = self.weights(loss, channel_count)
        if self.empty_target != "penalize_fp":
            present = (true > 0).to(loss.dtype)
            factor = present if factor is None else present * factor
        weighted = loss if factor is None else loss * factor
        if self.reduction == "none":
            return weighted.reshape(1) if weighted.ndim == 0 else weighted
        if self.reduction == "sum":
            return weighted.sum()
        if self.empty_target == "skip":
            return weighted.sum() / factor.sum().clamp_min(torch.finfo(loss.dtype).tiny)
        if self.class_weights is None:
            return weighted.mean()
        return weighted.sum() / (self.weights(loss, channel_count).sum() * (loss.numel() // max(loss.shape[-1], 1)))

    def fast_sums(self, output: torch.Tensor, target: torch.Tensor) -> Optional[tuple]:
        """The common case (binary, whole batch, float32 tensors of one shape, no autocast)
        without the general layout code: the same arithmetic, less Python per call."""
        if (not self._fast or output.dtype != torch.float32 or target.dtype != torch.float32
                or output.shape != target.shape or torch.is_autocast_enabled(output.device.type)):
            return None
        if self.from_logits:
            return SigmoidSums.apply(output.reshape(-1), target.reshape(-1))
        return RegionSums.apply(output.reshape(-1), target.reshape(-1), None, None)

    def one_node_fits(self, output: torch.Tensor, target: torch.Tensor) -> bool:
        """float32 tensors of one shape, no autocast: what the one-node binary path takes."""
        return (output.dtype is torch.float32 and target.dtype is torch.float32 and output.shape == target.shape
                and not torch.is_autocast_enabled(output.device.type))

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._one_node and self.one_node_fits(output, target):
            return BinaryRegionLoss.apply(output.reshape(-1), target.reshape(-1), self)
        sums = self.fast_sums(output, target)
        if sums is not None:
            return self.reduce(self.region_loss(*sums), sums[2])
        with full_precision(output):
            batch = self.prepare(output, target)
            inter, pred, true = self.sums(batch)
            return self.reduce(self.region_loss(inter, pred, true), true, batch.logits.shape[1])


class DiceLoss(RegionLoss):
    """Score ``(2 I + smooth_nr) / (P + T + smooth_dr)`` per region."""

    loss_name = "dice"

    def region_score(self, inter, pred, true):
        return self.ratio(2 * inter + self.smooth_nr, pred + true + self.smooth_dr)

    def score_grads(self, inter, pred, true):
        num, den = 2 * inter + self.smooth_nr, pred + true + self.smooth_dr
        score = num / den
        d_rest = -score / den
        return score, 2 / den, d_rest, d_rest


class IoULoss(RegionLoss):
    """Score ``(I + smooth_nr) / (P + T - I + smooth_dr)`` per region."""

    loss_name = "iou"

    def region_score(self, inter, pred, true):
        return self.ratio(inter + self.smooth_nr, pred + true - inter + self.smooth_dr)

    def score_grads(self, inter, pred, true):
        num, den = inter + self.smooth_nr, pred + true - inter + self.smooth_dr
        score = num / den
        d_rest = -score / den
        return score, (1 + score) / den, d_rest, d_rest


class TverskyLoss(RegionLoss):
    """``loss ** gamma`` per region, loss from the score
    ``(TP + nr) / (TP + alpha FP + beta FN + dr)``."""

    loss_name = "tversky"

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, " + super().extra_repr()

    def region_score(self, inter, pred, true):
        a, b = self.alpha, self.beta
        den = (1 - a - b) * inter + a * pred + b * true + self.smooth_dr
        return self.ratio(inter + self.smooth_nr, den)

    def region_loss(self, inter, pred, true):
        loss = super().region_loss(inter, pred, true)
        if self.gamma == 1:
            return loss
        floor = 0.0 if self.gamma >= 1 else torch.finfo(loss.dtype).eps
        return loss.clamp_min(floor).pow(self.gamma)


class DiceBCELoss(DiceLoss):
    """``bce_weight * CE + dice_weight * Dice``: binary cross entropy (a sigmoid per
    channel) in binary/multilabel mode, softmax cross entropy in multiclass mode."""

    loss_name = "dice_bce"

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, pos_weight: Optional[Any] = None,
                 label_smoothing: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.pos_weight, self.label_smoothing = pos_weight, label_smoothing
        # BCE and Dice in the one binary node: the BCE term needs plain targets and no pos_weight
        self._one_node_bce = self._one_node and pos_weight is None and not label_smoothing

    def extra_repr(self) -> str:
        extra = f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, "
        if self.pos_weight is not None or self.label_smoothing:
            extra += f"pos_weight={self.pos_weight}, label_smoothing={self.label_smoothing}, "
        return extra + super().extra_repr()

    def binary_cross_entropy(self, batch: Prepared) -> torch.Tensor:
        """BCE averaged over the pixels that count (``sum``: summed; ``none``: averaged
        within each region, the Dice term's shape)."""
        x, t, mask = batch.logits, batch.target, batch.mask
        if self.label_smoothing:
            t = t * (1 - 2 * self.label_smoothing) + self.label_smoothing  # smp: 1 -> 1 - e, 0 -> e
        per_region = self.reduction == "none"
        total = self.reduction == "sum" or mask is not None
        reduction = "none" if per_region else ("sum" if total else "mean")
        if not self.from_logits:
            value = F.binary_cross_entropy(x, t, weight=mask, reduction=reduction)
        else:
            value = binary_cross_entropy_with_logits(x, t, weight=mask, pos_weight=self.bce_pos_weight(x),
                                                     reduction=reduction)
        if per_region:
            dims = (0, 2) if self.regions == "batch" else (2,)
            return value.mean(dims) if mask is None else value.sum(dims) / mask.sum(dims).clamp_min(1)
        if mask is None or self.reduction == "sum":
            return value
        return value / mask.sum().clamp_min(1)

    def bce_pos_weight(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """``pos_weight`` as a tensor broadcasting over ``(N, C, S)``, or None."""
        if self.pos_weight is None:
            return None
        pos_weight = torch.as_tensor(self.pos_weight, dtype=x.dtype, device=x.device)
        if pos_weight.ndim:
            if pos_weight.numel() != x.shape[1]:
                raise LossInputError(f"loss 'dice_bce': pos_weight has {pos_weight.numel()} values but "
                                     f"the output has {x.shape[1]} channels")
            pos_weight = pos_weight.reshape(1, -1, 1)
        return pos_weight

    def cross_entropy(self, batch: Prepared) -> torch.Tensor:
        """Softmax cross entropy; label smoothing e as torch's: the target becomes
        ``(1 - e) onehot + e / C``."""
        if self.mode != "multiclass":
            return self.binary_cross_entropy(batch)
        x, t, e = batch.logits, batch.target, self.label_smoothing  # t is None for class indices
        log_prob = F.log_softmax(x, 1) if self.from_logits else x.clamp_min(torch.finfo(x.dtype).tiny).log()
        total = self.reduction == "sum"
        if batch.indices is None:
            if e:
                t = t * (1 - e) + e / x.shape[1]
            per_pixel = -(t * log_prob).sum(1)
            return per_pixel.sum() if total else per_pixel.mean()
        ignore = self.ignore_index if self.ignore_index is not None else -100
        value = F.nll_loss(log_prob, batch.indices, ignore_index=ignore, reduction="sum")
        if e:
            uniform = -log_prob.mean(1)
            uniform = uniform.sum() if batch.mask is None else (uniform * batch.mask[:, 0]).sum()
            value = (1 - e) * value + e * uniform
        if total:
            return value
        count = batch.indices.numel() if batch.mask is None else batch.mask.sum().clamp_min(1)
        return value / count

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._one_node_bce and self.one_node_fits(output, target):
            return BinaryRegionLoss.apply(output.reshape(-1), target.reshape(-1), self,
                                          self.dice_weight, self.bce_weight)
        with full_precision(output):
            batch = self.prepare(output, target)
            channels = batch.logits.shape[1]
            if batch.prob is None and not self.label_smoothing:
                # multiclass logits and class indices: the cross entropy from the Dice term's softmax
                *sums, log_p_t = SoftmaxIndexSums.apply(batch.logits, batch.indices, self.regions == "image", True)
                inter, pred, true = self.scored(sums, channels)
                cross_entropy = -(log_p_t.sum() if self.reduction == "sum" else log_p_t.mean())
            else:
                inter, pred, true = self.sums(batch)
                cross_entropy = self.cross_entropy(batch)
            dice = self.reduce(self.region_loss(inter, pred, true), true, channels)
            return self.bce_weight * cross_entropy + self.dice_weight * dice


LOSSES = {"dice": DiceLoss, "iou": IoULoss, "tversky": TverskyLoss, "dice_bce": DiceBCELoss}
