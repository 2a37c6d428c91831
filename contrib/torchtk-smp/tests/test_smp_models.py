"""smp architectures with any encoder; encoder weights only from a local file or the cache."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from torchtk.core.errors import ParamsError, UserInputError
from torchtk.core.registry import Registry

SMALL = {"encoder_name": "resnet18", "in_channels": 1, "classes": 2}


@pytest.fixture(scope="module")
def registry():
    return Registry()


@pytest.mark.parametrize("name, extra", [
    ("smp::unet", {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}),
    ("unetplusplus", {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}),
    ("fpn", {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}),
    ("deeplabv3plus", {"decoder_channels": 32}),
    ("linknet", {}),
])
def test_architectures_build_and_predict_per_pixel(registry, name, extra):
    model = registry.create("model", name, **SMALL, **extra)
    assert model.eval()(torch.randn(2, 1, 64, 64)).shape == (2, 2, 64, 64)


def test_any_timm_encoder_through_tu(registry):
    model = registry.create("model", "smp::unet", encoder_name="tu-resnet10t", encoder_depth=3,
                            decoder_channels=[32, 16, 8], classes=1)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_encoder_name_is_validated_from_the_catalog(registry):
    with pytest.raises(ParamsError, match=r"unknown smp encoder 'resnet19'. Did you mean 'resnet18'"):
        registry.create("model", "fpn", encoder_name="resnet19")
    with pytest.raises(ParamsError, match="decoder_chanels"):
        registry.create("model", "fpn", decoder_chanels=3)


def test_encoder_weights_from_a_local_file_then_smp_adapts_the_channels(registry, tmp_path):
    import segmentation_models_pytorch as smp

    source = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[32, 16, 8])
    torch.save(source.encoder.state_dict(), tmp_path / "encoder.pt")
    model = registry.create("model", "smp::unet", encoder_name="resnet18", encoder_depth=3,
                            decoder_channels=[32, 16, 8], in_channels=1, encoder_weights=str(tmp_path / "encoder.pt"))
    assert torch.allclose(model.encoder.conv1.weight, source.encoder.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(model.encoder.layer1[0].conv1.weight, source.encoder.layer1[0].conv1.weight)
    assert "encoder.layer1.0.conv1.weight" in model.torchtk_loaded_parameters


def test_encoder_weights_names_are_never_downloaded(registry, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UserInputError, match=r"resnet18 imagenet weights are not in the Hugging Face cache.*"
                                             r"never downloads.*smp-hub/resnet18.imagenet"):
        registry.create("model", "fpn", encoder_name="resnet18", encoder_weights="imagenet")
    with pytest.raises(UserInputError, match=r"encoder resnet18 has no weights 'instagram'; available: imagenet"):
        registry.create("model", "fpn", encoder_name="resnet18", encoder_weights="instagram")


def test_a_populated_cache_is_used(registry, tmp_path, monkeypatch):
    import huggingface_hub.constants
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    from torchtk_smp._catalog import ENCODERS

    repo_id, revision = ENCODERS["resnet18"]["imagenet"]
    folder = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots" / revision
    folder.mkdir(parents=True)
    source = smp.FPN("resnet18", encoder_weights=None)
    save_file(source.encoder.state_dict(), str(folder / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = registry.create("model", "fpn", encoder_name="resnet18", encoder_weights="imagenet")
    assert torch.equal(model.encoder.conv1.weight, source.encoder.conv1.weight)


def test_whole_model_weights_keep_the_body_and_refresh_a_head_of_another_size(registry, tmp_path):
    trained = registry.create("model", "linknet", encoder_name="resnet18", classes=1)
    torch.save({"model": trained.state_dict(), "format": 1}, tmp_path / "best.pt")
    model = registry.create("model", "linknet", encoder_name="resnet18", classes=3, weights=str(tmp_path / "best.pt"))
    assert torch.equal(model.encoder.conv1.weight, trained.encoder.conv1.weight)
    assert model.segmentation_head[0].out_channels == 3


def test_params_are_strict(registry):
    from torchtk_smp.models import params_model

    with pytest.raises(ValidationError):
        params_model("unet").model_validate({"classes": "2"})
