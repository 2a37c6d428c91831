"""A small segmentation workflow: the synthetic ``shapes`` dataset and the ``unet`` model,
used by the bundled ``shapes-dice`` example (with the ``iou`` metric of
:mod:`torchtk.plugins.metrics`)."""

from __future__ import annotations

from pydantic import Field

from torchtk import Component, Params, hookimpl


class ShapesParams(Params):
    """Grey images of random filled circles and rectangles on a noisy, uneven background.

    Inputs are ``(1, size, size)`` float images; targets are ``(1, size, size)`` float
    masks (1 inside any shape), ready for ``dice``, ``dice_bce`` or ``bce_with_logits``
    and the ``iou`` metric. Shapes are only moderately brighter than the background
    and the pixel noise is strong, so a pixel threshold is not enough: the model has to
    use the neighbourhood. Generated in memory, deterministically from ``seed``.
    ``tk predict`` reads image files for such a run as grey images in [0, 1].
    """

    n_samples: int = Field(1000, ge=1, description="Number of images.")
    size: int = Field(32, ge=8, description="Image height and width in pixels.")
    max_shapes: int = Field(3, ge=1, description="Each image holds 1 to max_shapes shapes.")
    noise: float = Field(0.3, ge=0, description="Standard deviation of the Gaussian pixel noise.")
    contrast: float = Field(0.5, gt=0, description="Mean brightness of a shape above the background.")
    seed: int = Field(0, ge=0, description="Seed of the data itself (the run seed only shuffles and splits).")


class UNetParams(Params):
    """A small U-Net (Ronneberger et al. 2015) for segmentation, outputting logits.

    ``depth`` max-poolings with channel counts doubling from ``base_channels``, then
    transposed-convolution upsampling with skip connections; each level is two 3x3
    convolutions with batch norm and ReLU. Input height and width must be divisible by
    ``2 ** depth``.
    """

    in_channels: int = Field(1, ge=1, description="Channels of the input image.")
    out_channels: int = Field(1, ge=1, description="Output channels: 1 for binary masks, C for C classes.")
    base_channels: int = Field(16, ge=1, description="Channels of the first level (doubling each level down).")
    depth: int = Field(3, ge=1, le=6, description="Number of down-sampling steps.")


def shapes(params: ShapesParams):
    import torch
    from torch.utils.data import TensorDataset

    n, size = params.n_samples, params.size
    g = torch.Generator().manual_seed(params.seed)
    coords = torch.arange(size, dtype=torch.float32)
    y, x = coords.view(1, size, 1), coords.view(1, 1, size)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    images = torch.zeros(n, size, size)
    count = torch.randint(1, params.max_shapes + 1, (n,), generator=g)
    for k in range(params.max_shapes):
        present = (count > k).view(n, 1, 1)
        cy, cx = (torch.rand(2, n, 1, 1, generator=g) * size * 0.8 + size * 0.1).unbind(0)
        half = (torch.rand(2, n, 1, 1, generator=g) * 0.15 + 0.07) * size
        circle = (y - cy) ** 2 + (x - cx) ** 2 <= half[0] ** 2
        box = ((y - cy).abs() <= half[0]) & ((x - cx).abs() <= half[1])
        is_circle = torch.rand(n, 1, 1, generator=g) < 0.5
        shape = torch.where(is_circle, circle, box) & present
        brightness = params.contrast * (0.6 + 0.8 * torch.rand(n, 1, 1, generator=g))
        images = torch.where(shape, brightness, images)
        masks |= shape
    slope = torch.randn(2, n, 1, 1, generator=g) * 0.15 / size
    background = torch.rand(n, 1, 1, generator=g) * 0.3 + slope[0] * y + slope[1] * x
    images = images + background + params.noise * torch.randn(n, size, size, generator=g)
    return TensorDataset(images.unsqueeze(1), masks.unsqueeze(1).float())


@hookimpl
def register_components(register):
    register(Component("dataset", "shapes", "Synthetic segmentation: shapes on a noisy background, with masks.",
                       params=ShapesParams, extras={"file_reader": "torchtk.plugins.images:grey_reader"}))
    register(Component("model", "unet", "Small U-Net for segmentation (logits out).", params=UNetParams))


@hookimpl
def make_dataset(name, params):
    return shapes(params)


@hookimpl
def make_model(name, params):
    from torchtk.plugins._unet import UNet

    return UNet(**params.model_dump())
