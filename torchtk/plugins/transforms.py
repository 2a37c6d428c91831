"""Input transforms: torchvision ``transforms.v2`` by name, each with a strict params
model, and ``model_preset``, the preset transforms of a torchvision weights name.

The spec lists them per split::

    "data": {"name": "image_folder", "params": {"train": "images/train", "val": "images/val"},
             "transforms": {"train": [{"name": "random_resized_crop", "params": {"size": 224}},
                                      "random_horizontal_flip", "normalize"],
                            "val":   [{"name": "resize", "params": {"size": 256}},
                                      {"name": "center_crop", "params": {"size": 224}}, "normalize"]}}

The image datasets already give float32 ``(C, H, W)`` tensors in [0, 1], so these act
on tensors (interpolation modes are the tensor ones; ``normalize`` defaults to the
ImageNet mean and std). The catalog below is plain data: ``tk list transforms`` never
imports torchvision, which is imported when a transform is built; a test checks every
entry against the installed torchvision (class, parameter names, defaults). Every built
transform pickles, for ``num_workers > 0``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torchtk import Component, NoParams, hookimpl

PARAMS = "torchtk.plugins._transform_params"

# -- the catalog: plain data, checked against torchvision by tests/plugins/test_transforms.py --


class Entry(NamedTuple):
    name: str
    torchvision: str  # the transforms.v2 class, or "" for a builder in _transform_params
    summary: str
    params: str  # the params model's name in torchtk.plugins._transform_params ("" for none)
    aliases: tuple[str, ...] = ()
    build: str = ""  # a builder function in _transform_params, instead of the torchvision class
    defaults_differ: tuple[str, ...] = ()  # params whose default deliberately differs from torchvision's

    @property
    def params_ref(self) -> Any:
        return f"{PARAMS}:{self.params}" if self.params else NoParams


CATALOG: tuple[Entry, ...] = (
    Entry("resize", "Resize", "Resize (shorter side, or to height x width).", "ResizeParams"),
    Entry("center_crop", "CenterCrop", "Crop the center.", "CenterCropParams"),
    Entry("random_resized_crop", "RandomResizedCrop", "Random crop of random area and aspect, resized.",
          "RandomResizedCropParams"),
    Entry("random_crop", "RandomCrop", "Random crop, optionally padded first.", "RandomCropParams"),
    Entry("pad", "Pad", "Pad the sides.", "PadParams"),
    Entry("random_horizontal_flip", "RandomHorizontalFlip", "Flip left-right with probability p.",
          "RandomHorizontalFlipParams", aliases=("hflip",)),
    Entry("random_vertical_flip", "RandomVerticalFlip", "Flip upside down with probability p.",
          "RandomVerticalFlipParams", aliases=("vflip",)),
    Entry("random_rotation", "RandomRotation", "Rotate by a random angle.", "RandomRotationParams"),
    Entry("random_affine", "RandomAffine", "Random rotation, translation, scale and shear.", "RandomAffineParams",
          defaults_differ=("degrees",)),
    Entry("random_perspective", "RandomPerspective", "Random perspective distortion.", "RandomPerspectiveParams"),
    Entry("color_jitter", "ColorJitter", "Random brightness, contrast, saturation and hue.", "ColorJitterParams"),
    Entry("normalize", "Normalize", "Normalize per channel (ImageNet mean and std by default).", "NormalizeParams",
          defaults_differ=("mean", "std")),
    Entry("to_dtype", "ToDtype", "Convert to another dtype, optionally rescaling values.", "ToDtypeParams"),
    Entry("grayscale", "Grayscale", "Convert to grayscale (1 or 3 channels).", "GrayscaleParams"),
    Entry("random_grayscale", "RandomGrayscale", "Convert to grayscale with probability p.", "RandomGrayscaleParams"),
    Entry("rgb", "RGB", "Convert 1-channel images to 3 channels (RGB models on grey data).", ""),
    Entry("random_erasing", "RandomErasing", "Erase a random rectangle with probability p.", "RandomErasingParams"),
    Entry("gaussian_blur", "GaussianBlur", "Gaussian blur of random sigma.", "GaussianBlurParams"),
    Entry("gaussian_noise", "GaussianNoise", "Add Gaussian noise.", "GaussianNoiseParams"),
    Entry("auto_augment", "AutoAugment", "AutoAugment with a learned policy (imagenet, cifar10, svhn).",
          "AutoAugmentParams", aliases=("autoaugment",)),
    Entry("rand_augment", "RandAugment", "RandAugment: N random operations of one magnitude.", "RandAugmentParams",
          aliases=("randaugment",)),
    Entry("trivial_augment_wide", "TrivialAugmentWide", "TrivialAugment Wide: one random operation per image.",
          "TrivialAugmentWideParams", aliases=("trivial_augment",)),
    Entry("aug_mix", "AugMix", "AugMix: a mix of augmentation chains.", "AugMixParams", aliases=("augmix",)),
    Entry("random_invert", "RandomInvert", "Invert colors with probability p.", "RandomInvertParams"),
    Entry("random_autocontrast", "RandomAutocontrast", "Maximise contrast with probability p.",
          "RandomAutocontrastParams"),
    Entry("random_equalize", "RandomEqualize", "Equalise the histogram with probability p.", "RandomEqualizeParams"),
    Entry("random_posterize", "RandomPosterize", "Reduce bits per channel with probability p.",
          "RandomPosterizeParams"),
    Entry("random_solarize", "RandomSolarize", "Invert pixels above a threshold with probability p.",
          "RandomSolarizeParams"),
    Entry("random_adjust_sharpness", "RandomAdjustSharpness", "Change sharpness with probability p.",
          "RandomAdjustSharpnessParams"),
    Entry("random_channel_permutation", "RandomChannelPermutation", "Shuffle the channels randomly.", ""),
    Entry("elastic_transform", "ElasticTransform", "Elastic deformation.", "ElasticTransformParams",
          aliases=("elastic",)),
    Entry("model_preset", "", "The preset transforms of a torchvision weights name (resize, crop, normalize).",
          "ModelPresetParams", build="model_preset"),
)
BY_NAME = {entry.name: entry for entry in CATALOG}


def arguments(params: Any) -> dict[str, Any]:
    """A params model as keyword arguments of the torchvision class (enums, dtypes)."""
    import torch
    from torchvision.transforms import AutoAugmentPolicy, InterpolationMode

    kwargs = params.model_dump()
    if "interpolation" in kwargs:
        kwargs["interpolation"] = InterpolationMode(kwargs["interpolation"])
    if "dtype" in kwargs:
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    if "policy" in kwargs:
        kwargs["policy"] = AutoAugmentPolicy(kwargs["policy"])
    return kwargs


@hookimpl
def register_components(register):
    for entry in CATALOG:
        register(Component("transform", entry.name, entry.summary, params=entry.params_ref, aliases=entry.aliases,
                           extras={"torchvision": f"torchvision.transforms.v2.{entry.torchvision}"}
                           if entry.torchvision else {}))


@hookimpl
def make_transform(name, params):
    entry = BY_NAME[name]
    if entry.build:
        from torchtk.plugins import _transform_params

        return getattr(_transform_params, entry.build)(params)
    from torchvision.transforms import v2

    return getattr(v2, entry.torchvision)(**arguments(params))
