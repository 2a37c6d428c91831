"""The params models of the built-in transforms (``torchtk.plugins.transforms``), and
``model_preset``'s builder. Imported only when a transform is shown, validated or
built, so ``tk list`` does not pay for about 30 pydantic models."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from torchtk import Params

# -- param types shared by many transforms -----------------------------------------------

Size = Union[Annotated[int, Field(ge=1)], Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=2)]]
Padding = Union[Annotated[int, Field(ge=0)], Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=4)]]
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]
Fill = Union[float, list[float]]
Interpolation = Literal["nearest", "nearest-exact", "bilinear", "bicubic"]
PaddingMode = Literal["constant", "edge", "reflect", "symmetric"]
Probability = Annotated[float, Field(ge=0, le=1)]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

SIZE = "Output size: one int (the shorter side for resize, a square for crops) or [height, width]."
INTERPOLATION = "Interpolation: nearest, nearest-exact, bilinear or bicubic."
FILL = "Fill value of pixels outside the image: one number, or one per channel."


def _ordered(values: Any, what: str) -> None:
    if isinstance(values, list) and len(values) == 2 and values[0] > values[1]:
        raise ValueError(f"{what} {values}: give [min, max] with min <= max")


class _P(Params):
    """One probability ``p``."""

    p: Probability = Field(0.5, description="Probability of applying the transform to an image.")


# -- the params of each transform --------------------------------------------------------


class ResizeParams(Params):
    """Resize the image (``v2.Resize``). One int resizes the shorter side to it, keeping
    the aspect ratio; ``[height, width]`` resizes to exactly that."""

    size: Size = Field(description=SIZE)
    interpolation: Interpolation = Field("bilinear", description=INTERPOLATION)
    max_size: Optional[int] = Field(None, ge=1, description="Upper bound of the longer side (with a one-int size).")
    antialias: bool = Field(True, description="Anti-alias when downsampling (bilinear, bicubic).")


class CenterCropParams(Params):
    """Crop the center of the image (``v2.CenterCrop``), padding with zeros if it is smaller."""

    size: Size = Field(description=SIZE)


class RandomResizedCropParams(Params):
    """Crop a random part of random area and aspect ratio, resized to ``size``
    (``v2.RandomResizedCrop``): the usual ImageNet training augmentation."""

    size: Size = Field(description=SIZE)
    scale: Pair = Field([0.08, 1.0], description="[min, max] fraction of the image area the crop covers.")
    ratio: Pair = Field([0.75, 4 / 3], description="[min, max] aspect ratio (width / height) of the crop.")
    interpolation: Interpolation = Field("bilinear", description=INTERPOLATION)
    antialias: bool = Field(True, description="Anti-alias when downsampling (bilinear, bicubic).")

    @model_validator(mode="after")
    def _ranges(self) -> "RandomResizedCropParams":
        _ordered(self.scale, "scale")
        _ordered(self.ratio, "ratio")
        if not 0 < self.scale[0] <= 1 or not 0 < self.scale[1] <= 1:
            raise ValueError(f"scale {self.scale}: fractions of the area, in (0, 1]")
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio {self.ratio}: aspect ratios must be positive")
        return self


def _check_padding(value: Any) -> Any:
    """torchvision's padding is one, two or four numbers."""
    if isinstance(value, list) and len(value) == 3:
        raise ValueError("padding: one, two or four numbers")
    return value


class RandomCropParams(Params):
    """Crop a random part of ``size`` (``v2.RandomCrop``), optionally padding first."""

    size: Size = Field(description=SIZE)
    padding: Optional[Padding] = Field(None, description="Padding before cropping: all sides, [left/right, "
                                                         "top/bottom] or [left, top, right, bottom].")
    pad_if_needed: bool = Field(False, description="Pad images smaller than size instead of failing.")
    fill: Fill = Field(0.0, description=FILL)
    padding_mode: PaddingMode = Field("constant", description="constant (fill), edge, reflect or symmetric.")

    _padding = field_validator("padding")(classmethod(lambda cls, value: _check_padding(value)))


class PadParams(Params):
    """Pad the image on its sides (``v2.Pad``)."""

    padding: Padding = Field(description="Padding: all sides, [left/right, top/bottom] or [left, top, right, bottom].")
    fill: Fill = Field(0.0, description=FILL)
    padding_mode: PaddingMode = Field("constant", description="constant (fill), edge, reflect or symmetric.")

    _padding = field_validator("padding")(classmethod(lambda cls, value: _check_padding(value)))


class RandomHorizontalFlipParams(_P):
    """Flip the image left-right with probability ``p`` (``v2.RandomHorizontalFlip``)."""


class RandomVerticalFlipParams(_P):
    """Flip the image upside down with probability ``p`` (``v2.RandomVerticalFlip``)."""


Degrees = Union[Annotated[float, Field(ge=0)], Pair]


class RandomRotationParams(Params):
    """Rotate by a random angle (``v2.RandomRotation``): one number ``d`` means
    ``[-d, d]`` degrees."""

    degrees: Degrees = Field(description="Angle range in degrees: d for [-d, d], or [min, max].")
    interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="nearest or bilinear.")
    expand: bool = Field(False, description="Enlarge the output to hold the whole rotated image.")
    center: Optional[Pair] = Field(None, description="[x, y] center of rotation in pixels (default: the center).")
    fill: Fill = Field(0.0, description=FILL)

    @field_validator("degrees")
    @classmethod
    def _degrees(cls, value: Any) -> Any:
        _ordered(value, "degrees")
        return value


class RandomAffineParams(Params):
    """Random affine transformation: rotation, translation, scale, shear (``v2.RandomAffine``)."""

    degrees: Degrees = Field(0.0, description="Rotation range in degrees: d for [-d, d], or [min, max] (0: none).")
    translate: Optional[Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)]] = Field(
        None, description="[a, b]: horizontal shift up to a * width, vertical up to b * height.")
    scale: Optional[Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)]] = Field(
        None, description="[min, max] scaling factor (default: no scaling).")
    shear: Optional[Union[Annotated[float, Field(ge=0)], Annotated[list[float], Field(min_length=2, max_length=4)]]] = Field(
        None, description="Shear in degrees: s for [-s, s] along x, [min, max] along x, or [xmin, xmax, ymin, ymax].")
    interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="nearest or bilinear.")
    fill: Fill = Field(0.0, description=FILL)
    center: Optional[Pair] = Field(None, description="[x, y] center in pixels (default: the center).")

    @model_validator(mode="after")
    def _ranges(self) -> "RandomAffineParams":
        _ordered(self.degrees, "degrees")
        _ordered(self.scale, "scale")
        if isinstance(self.shear, list) and len(self.shear) == 3:
            raise ValueError("shear: one, two or four numbers")
        return self


class RandomPerspectiveParams(Params):
    """Random perspective distortion with probability ``p`` (``v2.RandomPerspective``)."""

    distortion_scale: Probability = Field(0.5, description="Degree of distortion, 0 (none) to 1.")
    p: Probability = Field(0.5, description="Probability of applying the transform to an image.")
    interpolation: Literal["nearest", "bilinear"] = Field("bilinear", description="nearest or bilinear.")
    fill: Fill = Field(0.0, description=FILL)


Jitter = Optional[Union[Annotated[float, Field(ge=0)], Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]]]


class ColorJitterParams(Params):
    """Randomly change brightness, contrast, saturation and hue (``v2.ColorJitter``).
    A number ``x`` picks a factor in ``[max(0, 1 - x), 1 + x]`` (hue: in ``[-x, x]``);
    a pair gives the range itself. None: leave that property alone."""

    brightness: Jitter = Field(None, description="Brightness jitter: x or [min, max] factor.")
    contrast: Jitter = Field(None, description="Contrast jitter: x or [min, max] factor.")
    saturation: Jitter = Field(None, description="Saturation jitter: x or [min, max] factor.")
    hue: Optional[Union[Annotated[float, Field(ge=0, le=0.5)],
                        Annotated[list[Annotated[float, Field(ge=-0.5, le=0.5)]], Field(min_length=2, max_length=2)]]] = Field(
        None, description="Hue shift: x in [0, 0.5] for [-x, x], or [min, max] within [-0.5, 0.5].")

    @model_validator(mode="after")
    def _ranges(self) -> "ColorJitterParams":
        for name in ("brightness", "contrast", "saturation", "hue"):
            _ordered(getattr(self, name), name)
        return self


class NormalizeParams(Params):
    """Subtract ``mean`` and divide by ``std`` per channel (``v2.Normalize``); the
    defaults are ImageNet's, what torchvision's pretrained models expect."""

    mean: Annotated[list[float], Field(min_length=1)] = Field(IMAGENET_MEAN, description="Mean per channel.")
    std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = Field(
        IMAGENET_STD, description="Standard deviation per channel (positive).")

    @model_validator(mode="after")
    def _lengths(self) -> "NormalizeParams":
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values and std {len(self.std)}: one per channel each")
        return self


class ToDtypeParams(Params):
    """Convert the image to another dtype (``v2.ToDtype``); with ``scale``, values are
    rescaled between the ranges (uint8 0..255 <-> float 0..1)."""

    dtype: Literal["float32", "float16", "bfloat16", "float64", "uint8"] = Field(
        description="Target dtype: float32, float16, bfloat16, float64 or uint8.")
    scale: bool = Field(False, description="Rescale the values to the target dtype's range.")


class GrayscaleParams(Params):
    """Convert the image to grayscale (``v2.Grayscale``)."""

    num_output_channels: Literal[1, 3] = Field(1, description="1, or 3 identical channels (for RGB models).")


class RandomGrayscaleParams(Params):
    """Convert to grayscale with probability ``p``, keeping the channel count (``v2.RandomGrayscale``)."""

    p: Probability = Field(0.1, description="Probability of converting an image.")


class RandomErasingParams(Params):
    """Erase a random rectangle with probability ``p`` (``v2.RandomErasing``; Zhong et
    al. 2017): apply after ``normalize``, as torchvision recommends."""

    p: Probability = Field(0.5, description="Probability of erasing a rectangle in an image.")
    scale: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)] = Field(
        [0.02, 0.33], description="[min, max] fraction of the image area erased.")
    ratio: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] = Field(
        [0.3, 3.3], description="[min, max] aspect ratio of the erased rectangle.")
    value: Union[float, list[float], Literal["random"]] = Field(
        0.0, description="Erasing value: one number, one per channel, or 'random' (normal noise).")

    @model_validator(mode="after")
    def _ranges(self) -> "RandomErasingParams":
        _ordered(self.scale, "scale")
        _ordered(self.ratio, "ratio")
        return self


class GaussianBlurParams(Params):
    """Blur with a Gaussian kernel of random sigma (``v2.GaussianBlur``)."""

    kernel_size: Union[Annotated[int, Field(ge=1)], Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)]] = Field(
        description="Kernel size, odd: one int or [height, width].")
    sigma: Union[Annotated[float, Field(gt=0)], Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)]] = Field(
        [0.1, 2.0], description="Sigma: a fixed value, or [min, max] to pick from.")

    @model_validator(mode="after")
    def _odd(self) -> "GaussianBlurParams":
        sizes = self.kernel_size if isinstance(self.kernel_size, list) else [self.kernel_size]
        if any(k % 2 == 0 for k in sizes):
            raise ValueError(f"kernel_size {self.kernel_size}: must be odd")
        _ordered(self.sigma, "sigma")
        return self


class GaussianNoiseParams(Params):
    """Add Gaussian noise to a float image (``v2.GaussianNoise``)."""

    mean: float = Field(0.0, description="Mean of the noise.")
    sigma: float = Field(0.1, ge=0, description="Standard deviation of the noise.")
    clip: bool = Field(True, description="Clamp the result to [0, 1].")


class AutoAugmentParams(Params):
    """AutoAugment (Cubuk et al. 2018) with a learned policy (``v2.AutoAugment``)."""

    policy: Literal["imagenet", "cifar10", "svhn"] = Field("imagenet", description="imagenet, cifar10 or svhn.")
    interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="nearest or bilinear.")
    fill: Optional[Fill] = Field(None, description=FILL)


class RandAugmentParams(Params):
    """RandAugment (Cubuk et al. 2019): ``num_ops`` random operations of one magnitude (``v2.RandAugment``)."""

    num_ops: int = Field(2, ge=0, description="Operations applied in sequence.")
    magnitude: int = Field(9, ge=0, description="Magnitude of every operation (below num_magnitude_bins).")
    num_magnitude_bins: int = Field(31, ge=2, description="Number of magnitude levels.")
    interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="nearest or bilinear.")
    fill: Optional[Fill] = Field(None, description=FILL)

    @model_validator(mode="after")
    def _magnitude(self) -> "RandAugmentParams":
        if self.magnitude >= self.num_magnitude_bins:
            raise ValueError(f"magnitude {self.magnitude} must be below num_magnitude_bins {self.num_magnitude_bins}")
        return self


class TrivialAugmentWideParams(Params):
    """TrivialAugment Wide (Müller and Hutter 2021): one random operation, random
    magnitude, per image (``v2.TrivialAugmentWide``)."""

    num_magnitude_bins: int = Field(31, ge=2, description="Number of magnitude levels.")
    interpolation: Literal["nearest", "bilinear"] = Field("nearest", description="nearest or bilinear.")
    fill: Optional[Fill] = Field(None, description=FILL)


class AugMixParams(Params):
    """AugMix (Hendrycks et al. 2019): a mix of augmentation chains (``v2.AugMix``)."""

    severity: int = Field(3, ge=1, le=10, description="Severity of the base operations, 1 to 10.")
    mixture_width: int = Field(3, ge=1, description="Number of augmentation chains.")
    chain_depth: int = Field(-1, ge=-1, description="Depth of each chain; -1: random in [1, 3].")
    alpha: float = Field(1.0, gt=0, description="Dirichlet and Beta parameter of the mixing weights.")
    all_ops: bool = Field(True, description="Use all operations (including brightness, contrast, color, sharpness).")
    interpolation: Literal["nearest", "bilinear"] = Field("bilinear", description="nearest or bilinear.")
    fill: Optional[Fill] = Field(None, description=FILL)


class RandomInvertParams(_P):
    """Invert the colors with probability ``p`` (``v2.RandomInvert``)."""


class RandomAutocontrastParams(_P):
    """Maximise the contrast with probability ``p`` (``v2.RandomAutocontrast``)."""


class RandomEqualizeParams(_P):
    """Equalise the histogram with probability ``p`` (``v2.RandomEqualize``)."""


class RandomPosterizeParams(Params):
    """Keep only ``bits`` bits per channel, with probability ``p`` (``v2.RandomPosterize``)."""

    bits: int = Field(ge=1, le=8, description="Bits kept per channel, 1 to 8.")
    p: Probability = Field(0.5, description="Probability of applying the transform to an image.")


class RandomSolarizeParams(Params):
    """Invert the pixels above ``threshold``, with probability ``p`` (``v2.RandomSolarize``)."""

    threshold: float = Field(ge=0, le=1, description="Pixels above it are inverted (images are in [0, 1]).")
    p: Probability = Field(0.5, description="Probability of applying the transform to an image.")


class RandomAdjustSharpnessParams(Params):
    """Change the sharpness by ``sharpness_factor`` with probability ``p`` (``v2.RandomAdjustSharpness``)."""

    sharpness_factor: float = Field(ge=0, description="0: blurred, 1: unchanged, 2: twice as sharp.")
    p: Probability = Field(0.5, description="Probability of applying the transform to an image.")


class ElasticTransformParams(Params):
    """Elastic deformation, as for handwritten digits (``v2.ElasticTransform``). The
    displacements are smoothed by a Gaussian kernel of about ``8 * sigma`` pixels, which
    must be smaller than the image: lower ``sigma`` for images under 41 pixels."""

    alpha: float = Field(50.0, ge=0, description="Magnitude of the displacements.")
    sigma: float = Field(5.0, gt=0, description="Smoothness of the displacements.")
    interpolation: Literal["nearest", "bilinear"] = Field("bilinear", description="nearest or bilinear.")
    fill: Fill = Field(0.0, description=FILL)


class ModelPresetParams(Params):
    """The transforms a torchvision pretrained model was evaluated with (resize, center
    crop, normalize with its mean and std), from its weights:
    ``torchvision.models.get_weight(weights).transforms()``. Nothing is downloaded.

    ``weights`` is a full name such as ``ResNet18_Weights.IMAGENET1K_V1``, or, with
    ``model``, a name relative to it (``IMAGENET1K_V1``, ``DEFAULT``).
    ``crop_size`` / ``resize_size`` override the preset's sizes, for small images.
    """

    weights: str = Field(description="Weights name: ResNet18_Weights.IMAGENET1K_V1, or IMAGENET1K_V1 / DEFAULT with model.")
    model: Optional[str] = Field(None, description="torchvision model name (resnet18) that weights is relative to.")
    crop_size: Optional[int] = Field(None, ge=1, description="Override the preset's crop size.")
    resize_size: Optional[int] = Field(None, ge=1, description="Override the preset's resize size.")

    @model_validator(mode="after")
    def _known(self) -> "ModelPresetParams":
        weights_enum(self.weights, self.model)  # imports torchvision: only when a spec uses it
        return self


def weights_enum(weights: str, model: str | None) -> Any:
    """The torchvision weights enum member named by ``weights`` (and ``model``); a
    ``ValueError`` with the closest names when there is none."""
    import difflib

    from torchvision import models

    if model is not None:
        try:
            enum = models.get_model_weights(model)
        except Exception:
            close = difflib.get_close_matches(model, models.list_models(), n=3)
            raise ValueError(f"unknown torchvision model {model!r}" +
                             (f"; did you mean {', '.join(close)}?" if close else "")) from None
        members = [m.name for m in enum] + ["DEFAULT"]
        if weights not in members:
            raise ValueError(f"{model} has no weights {weights!r}; choose one of {', '.join(members)}")
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    try:
        return models.get_weight(weights)
    except Exception:
        known = [f"{type(w).__name__}.{w.name}" for name in models.list_models()
                 for w in models.get_model_weights(name)]
        close = difflib.get_close_matches(weights, known, n=3, cutoff=0.5)
        raise ValueError(f"unknown torchvision weights {weights!r} (give Enum.MEMBER, such as "
                         "ResNet18_Weights.IMAGENET1K_V1, or model + weights)" +
                         (f"; did you mean {', '.join(close)}?" if close else "")) from None


def model_preset(params: ModelPresetParams) -> Any:
    weights = weights_enum(params.weights, params.model)
    overrides = {k: v for k, v in (("crop_size", params.crop_size), ("resize_size", params.resize_size))
                 if v is not None}
    try:
        return weights.transforms(**overrides)
    except TypeError as exc:
        raise ValueError(f"the preset of {params.weights} does not take {', '.join(overrides)} ({exc})") from None
