"""Transforms: every catalog entry builds, runs on a small tensor image and pickles; the
catalog agrees with the installed torchvision; params are validated; listing does not
import torchvision."""

from __future__ import annotations

import inspect
import json
import pickle
import re
import subprocess
import sys

import pytest
import torch

import torchtk
from torchtk.core.errors import SpecError
from torchtk.plugins.transforms import BY_NAME, CATALOG
from torchtk.testing import check_plugin, registry_with

REQUIRED = {
    "resize": {"size": 12},
    "center_crop": {"size": [10, 12]},
    "random_resized_crop": {"size": 16},
    "random_crop": {"size": 12, "padding": [1, 2]},
    "pad": {"padding": [1, 2, 3, 4], "padding_mode": "reflect"},
    "random_rotation": {"degrees": [-10, 30], "fill": [0.5, 0.5, 0.5]},
    "random_affine": {"degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": 5},
    "color_jitter": {"brightness": 0.4, "contrast": [0.5, 1.5], "saturation": 0.2, "hue": 0.1},
    "to_dtype": {"dtype": "float16"},
    "gaussian_blur": {"kernel_size": 3},
    "random_posterize": {"bits": 4},
    "random_solarize": {"threshold": 0.5},
    "random_adjust_sharpness": {"sharpness_factor": 2.0},
    "random_erasing": {"p": 1.0, "value": "random"},
    "elastic_transform": {"sigma": 2.0},  # the default sigma 5 needs images over 40 pixels
    "model_preset": {"weights": "ResNet18_Weights.IMAGENET1K_V1"},
}
SHAPES = {"resize": (3, 12, 14), "center_crop": (3, 10, 12), "random_resized_crop": (3, 16, 16),
          "random_crop": (3, 12, 12), "pad": (3, 26, 28), "grayscale": (1, 20, 24), "model_preset": (3, 224, 224)}


@pytest.mark.parametrize("name", [entry.name for entry in CATALOG])
def test_every_transform_builds_runs_and_pickles(name):
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    transform = torchtk.registry.create("transform", name, **REQUIRED.get(name, {}))
    copy = pickle.loads(pickle.dumps(transform))
    torch.manual_seed(0)
    out = transform(image.clone())
    torch.manual_seed(0)
    assert torch.equal(copy(image.clone()), out)
    assert isinstance(out, torch.Tensor) and out.shape == SHAPES.get(name, (3, 20, 24))
    assert out.dtype == (torch.float16 if name == "to_dtype" else torch.float32)


def test_grey_images_to_rgb():
    assert torchtk.registry.create("transform", "rgb")(torch.rand(1, 4, 4)).shape == (3, 4, 4)
    assert torchtk.registry.create("transform", "grayscale", num_output_channels=3)(torch.rand(3, 4, 4)).shape == (3, 4, 4)


def test_normalize_defaults_to_imagenet():
    transform = torchtk.registry.create("transform", "normalize")
    assert list(transform.mean) == [0.485, 0.456, 0.406] and list(transform.std) == [0.229, 0.224, 0.225]
    image = torch.full((3, 2, 2), 0.485)
    assert transform(image)[0].abs().max() < 1e-6


def test_model_preset_is_torchvision_weights_transforms():
    from torchvision.models import ResNet18_Weights

    image = torch.rand(3, 300, 280)
    ours = torchtk.registry.create("transform", "model_preset", weights="ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(ours(image), ResNet18_Weights.IMAGENET1K_V1.transforms()(image))
    relative = torchtk.registry.create("transform", "model_preset", model="resnet18", weights="DEFAULT",
                                       crop_size=32, resize_size=36)
    assert relative(image).shape == (3, 32, 32)
    assert torch.equal(relative(image), ResNet18_Weights.DEFAULT.transforms(crop_size=32, resize_size=36)(image))


@pytest.mark.parametrize("name, params, message", [
    ("gaussian_blur", {"kernel_size": 4}, "must be odd"),
    ("color_jitter", {"hue": 0.7}, "less than or equal to 0.5"),
    ("color_jitter", {"brightness": [1.5, 0.5]}, r"brightness \[1.5, 0.5\]: give \[min, max\]"),
    ("random_resized_crop", {"size": 8, "scale": [0.0, 1.0]}, r"in \(0, 1\]"),
    ("random_resized_crop", {"size": 8, "ratio": [0.5]}, "at least 2 items"),
    ("resize", {}, "size"),
    ("resize", {"size": 0}, "greater than or equal to 1"),
    ("resize", {"size": "224"}, "size"),
    ("resize", {"size": 8, "interpolation": "lanczos"}, "nearest"),
    ("normalize", {"mean": [0.5], "std": [0.2, 0.2]}, "one per channel"),
    ("normalize", {"std": [0.0, 1.0, 1.0]}, "greater than 0"),
    ("random_horizontal_flip", {"p": 1.5}, "less than or equal to 1"),
    ("pad", {"padding": [1, 2, 3]}, "one, two or four"),
    ("rand_augment", {"magnitude": 31}, "below num_magnitude_bins"),
    ("to_dtype", {"dtype": "int7"}, "float32"),
    ("random_crop", {"size": 8, "extra": 1}, "extra"),
    ("model_preset", {"weights": "ResNet18_Weights.IMAGENET_V9"}, "did you mean ResNet18_Weights.IMAGENET1K_V1"),
    ("model_preset", {"model": "resnet18", "weights": "V9"}, "choose one of IMAGENET1K_V1, DEFAULT"),
    ("model_preset", {"model": "resnet1", "weights": "DEFAULT"}, "did you mean resnet18"),
])
def test_params_are_validated(name, params, message):
    with pytest.raises(Exception, match=message):
        torchtk.registry.create("transform", name, **params)


def test_a_spec_with_a_bad_transform_names_its_path():
    spec = {"name": "t", "model": {"name": "mlp", "params": {"in_features": 2, "out_features": 1}},
            "data": {"name": "fake_images", "transforms": {"val": ["normalize", {"name": "resize", "params": {"size": -1}}]}},
            "loss": "bce_with_logits", "optimizer": "sgd"}
    with pytest.raises(SpecError, match=r"data\.transforms\.val\[1\]\.params\.size"):
        torchtk.load_spec(spec)


def snake(class_name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


@pytest.mark.parametrize("entry", [e for e in CATALOG if e.torchvision], ids=lambda e: e.name)
def test_catalog_agrees_with_torchvision(entry):
    """The catalog is data (no torchvision import when listing): check it against the real classes."""
    from torchvision.transforms import v2

    cls = getattr(v2, entry.torchvision)
    assert entry.name == snake(entry.torchvision)
    model = torchtk.registry.resolve("transform", entry.name).params_model
    signature = inspect.signature(cls)
    for field_name, field in model.model_fields.items():
        assert field_name in signature.parameters, f"{entry.torchvision} has no parameter {field_name!r}"
        parameter = signature.parameters[field_name]
        if parameter.default is inspect.Parameter.empty:
            assert field.is_required() or field_name in entry.defaults_differ, field_name
            continue
        assert not field.is_required(), f"{field_name} has a default in torchvision"
        theirs = parameter.default
        theirs = getattr(theirs, "value", theirs)  # InterpolationMode, AutoAugmentPolicy
        theirs = list(theirs) if isinstance(theirs, tuple) else theirs
        if field_name not in entry.defaults_differ:
            assert field.default == theirs, f"{entry.name}.{field_name}: {field.default!r} != torchvision {theirs!r}"
    left_out = {name for name, p in signature.parameters.items()
                if p.default is inspect.Parameter.empty and name not in model.model_fields
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert not left_out, f"required torchvision parameters missing: {left_out}"


def test_catalog_names_and_aliases_are_unique():
    names = [e.name for e in CATALOG] + [a for e in CATALOG for a in e.aliases]
    assert len(names) == len(set(names))
    assert set(BY_NAME) == set(torchtk.registry.names("transform"))


def test_plugin_conforms():
    assert check_plugin(registry_with(), "torchtk.plugins.transforms") == []


def test_listing_transforms_does_not_import_torchvision():
    code = ("import sys, json\n"
            "from torchtk.core.cli import main\n"
            "for args in (['list', 'transforms'], ['show', 'transform', 'random_resized_crop'], ['list', 'datasets'],"
            " ['show', 'dataset', 'image_folder']):\n"
            "    try:\n"
            "        main(args)\n"
            "    except SystemExit as exit:\n"
            "        assert not exit.code, exit.code\n"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'PIL') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
