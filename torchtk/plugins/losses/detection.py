"""Bounding-box regression losses for paired ``(x1, y1, x2, y2)`` boxes.

Function-style losses: each factory returns a plain ``(output, target) -> scalar``
function. ``output`` and ``target`` are boxes of the same shape ``(..., 4)``, box ``i``
of the output paired with box ``i`` of the target.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from torchtk import Component, Params, hookimpl


class BoxParams(Params):
    reduction: Literal["mean", "sum", "none"] = Field(
        "mean", description="Mean or sum over the boxes, or none (one loss per box, the input's shape without "
                            "the last axis). The mean of no boxes is 0, as in torchvision.")
    eps: float = Field(1e-7, gt=0, description="Added to denominators so degenerate boxes stay finite.")


class BoxIoUParams(BoxParams):
    """IoU loss for paired boxes: ``1 - IoU`` with ``IoU = area(a ∩ b) / area(a ∪ b)``.

    ``mode: min`` divides by the smaller of the two areas instead of the union (the
    tutorial's ``isMin`` variant, 1 when one box contains the other). Boxes are
    ``(x1, y1, x2, y2)`` with ``x1 <= x2, y1 <= y2``; ``output`` and ``target`` have the
    same shape ``(..., 4)``. Per pair equal to ``1 - diag(torchvision.ops.box_iou(a, b))``
    (plus ``eps`` in the denominator), computed without the N x N matrix. Like torchvision,
    float16/bfloat16 boxes are computed in float32 (a 256 x 256 box's area overflows
    float16), and the mean over an empty batch of boxes is 0, not NaN.
    """

    mode: Literal["union", "min"] = Field("union", description="Denominator: union of the two boxes, or the smaller box's area.")


class GIoUParams(BoxParams):
    """Generalized IoU loss (Rezatofighi et al. 2019): ``1 - IoU + |C - A ∪ B| / |C|``,
    C the smallest box enclosing both. Gives a gradient even when boxes do not overlap.

    Calls ``torchvision.ops.generalized_box_iou_loss``; boxes are paired ``(..., 4)`` xyxy.
    """


class DIoUParams(BoxParams):
    """Distance IoU loss (Zheng et al. 2020): ``1 - IoU + d² / c²``, d the distance
    between box centres and c the diagonal of the enclosing box.

    Calls ``torchvision.ops.distance_box_iou_loss``; boxes are paired ``(..., 4)`` xyxy.
    """


class CIoUParams(BoxParams):
    """Complete IoU loss (Zheng et al. 2020): DIoU plus an aspect-ratio consistency term
    ``alpha * v``.

    ``torchvision.ops.complete_box_iou_loss``'s formula (equal to it wherever it is
    finite); boxes are paired ``(..., 4)`` xyxy. A box of zero width and height (a
    point) has aspect angle 0 here, where torchvision's ``atan(0 / 0)`` makes the loss
    NaN; a box of zero height has angle pi/2 in both, here with finite gradients.
    """


def _check(name, output, target):
    from torchtk.plugins.losses._inputs import fail

    if output.shape != target.shape or output.ndim == 0 or output.shape[-1] != 4:
        raise fail(name, output, target, "paired boxes of one shape (..., 4) in (x1, y1, x2, y2) form")


def reduce_boxes(loss, reduction: str):
    """torchvision's reductions: the mean of no boxes is 0 (with a gradient path), not NaN."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()


def pair_product(pairs):
    """``pairs[..., 0] * pairs[..., 1]``: the area of (width, height) pairs."""
    width, height = pairs.unbind(-1)
    return width * height


def box_iou_loss(params: BoxIoUParams):
    import torch

    use_min, eps, reduction = params.mode == "min", params.eps, params.reduction
    WIDE = (torch.float32, torch.float64)  # dtypes whose box areas do not overflow

    def box_iou(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check("box_iou", output, target)
        if output.dtype not in WIDE:
            output = output.float()  # float16 areas overflow (torchvision upcasts the same way)
        if target.dtype is not output.dtype:  # no dispatcher call when they agree (the usual case)
            target = target.to(output.dtype)
        # corners as (x, y) pairs: half the kernels of one op per coordinate. unbind() splits
        # them with one backward node (a stack), where slicing gives one zero-filled copy per
        # slice; and a pair's product is one multiply, where prod()'s backward checks for zeros
        out_low, out_high = output.unflatten(-1, (2, 2)).unbind(-2)
        tgt_low, tgt_high = target.unflatten(-1, (2, 2)).unbind(-2)
        low, high = torch.maximum(out_low, tgt_low), torch.minimum(out_high, tgt_high)
        inter = pair_product((high - low).clamp_min(0))
        area_out = pair_product(out_high - out_low)
        area_tgt = pair_product(tgt_high - tgt_low)
        den = torch.minimum(area_out, area_tgt) if use_min else area_out + area_tgt - inter
        return reduce_boxes(1 - inter / (den + eps), reduction)

    return box_iou


def complete_box_iou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7):
    """torchvision's CIoU loss, finite for point boxes (see :class:`CIoUParams`)."""
    import torch
    from torchvision import ops

    boxes1, boxes2 = (box if box.dtype in (torch.float32, torch.float64) else box.float() for box in (boxes1, boxes2))
    diou = ops.distance_box_iou_loss(boxes1, boxes2, reduction="none", eps=eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp_min(0) * (torch.min(y2, y2g) - torch.max(y1, y1g)).clamp_min(0)
    iou = inter / ((x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter + eps)
    v = (4 / (torch.pi ** 2)) * torch.pow(_aspect_angle(x2g - x1g, y2g - y1g) - _aspect_angle(x2 - x1, y2 - y1), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return reduce_boxes(diou + alpha * v, reduction)


def _aspect_angle(width, height):
    """``atan(width / height)``; at zero height pi/2 (0 for a point), with no 0/0 on the way."""
    import torch

    flat = height == 0
    angle = torch.atan(width / torch.where(flat, torch.ones_like(height), height))
    return torch.where(flat, (torch.pi / 2) * torch.sign(width), angle)


def torchvision_loss(name: str, params: BoxParams):
    from torchvision import ops

    function = {"giou": ops.generalized_box_iou_loss, "diou": ops.distance_box_iou_loss,
                "ciou": complete_box_iou_loss}[name]
    eps, reduce = params.eps, params.reduction

    def loss(output, target):
        _check(name, output, target)
        return function(output, target.to(output.dtype), reduction=reduce, eps=eps)

    loss.__name__ = name
    return loss


BOXES = {"prediction": "value"}  # tk predict: the output is boxes, written as values


@hookimpl
def register_components(register):
    register(Component("loss", "box_iou", "1 - IoU of paired xyxy boxes (union or min-area denominator).",
                       params=BoxIoUParams, aliases=("iou_box",), extras=BOXES))
    register(Component("loss", "giou", "Generalized IoU loss for paired xyxy boxes (torchvision.ops).",
                       params=GIoUParams, extras=BOXES))
    register(Component("loss", "diou", "Distance IoU loss for paired xyxy boxes (torchvision.ops).",
                       params=DIoUParams, extras=BOXES))
    register(Component("loss", "ciou", "Complete IoU loss for paired xyxy boxes (torchvision.ops).",
                       params=CIoUParams, extras=BOXES))


@hookimpl
def make_loss(name, params):
    from torchtk.plugins.losses._inputs import checked

    return checked(name, box_iou_loss(params) if name == "box_iou" else torchvision_loss(name, params))
