"""timm models through timm's create_model: sizes, local weights, the offline cache rule."""

from __future__ import annotations

import pytest
import torch

from torchtk.core.errors import UserInputError
from torchtk.core.registry import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry()


def test_num_classes_and_in_chans_go_through_timm(registry):
    model = registry.create("model", "timm::resnet10t", num_classes=3, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert model.conv1[0].in_channels == 1 and model.num_classes == 3


def test_a_local_file_loads_with_a_new_head(registry, tmp_path):
    import timm

    source = timm.create_model("resnet10t")  # 1000 classes, as a pretrained file would be
    torch.save(source.state_dict(), tmp_path / "r10t.pt")
    model = registry.create("model", "resnet10t", weights=str(tmp_path / "r10t.pt"), num_classes=4)
    assert model.fc.out_features == 4
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
    assert "fc.weight" not in model.torchtk_loaded_parameters and "conv1.0.weight" in model.torchtk_loaded_parameters
    assert any("head: newly initialised (4 classes" in line for line in model.torchtk_report)


def test_a_torchtk_checkpoint_keeps_its_head(registry, tmp_path):
    trained = registry.create("model", "resnet10t", num_classes=3)
    torch.save({"model": trained.state_dict(), "format": 1}, tmp_path / "best.pt")
    model = registry.create("model", "resnet10t", weights=str(tmp_path / "best.pt"))
    assert model.num_classes == 3 and torch.equal(model.fc.weight, trained.fc.weight)


def test_a_file_that_does_not_fit_is_one_input_error(registry, tmp_path):
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "other.pt")
    with pytest.raises(UserInputError, match=r"model.params.weights: .*other.pt.*does not fit timm's resnet10t"):
        registry.create("model", "resnet10t", weights=str(tmp_path / "other.pt"))


def test_weights_are_never_downloaded(registry, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UserInputError, match=r"resnet10t.c3_in1k are not cached.*never downloads.*"
                                             r"https://huggingface.co/timm/resnet10t.c3_in1k"):
        registry.create("model", "resnet10t", weights="DEFAULT")
    with pytest.raises(UserInputError, match=r"no pretrained tag 'imagenet'; available: c3_in1k"):
        registry.create("model", "resnet10t", weights="imagenet")


def test_a_populated_hugging_face_cache_is_used(registry, tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    # the layout huggingface_hub writes: models--ORG--REPO/{refs/main, snapshots/HASH/FILE}
    repo = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    source = timm.create_model("resnet10t")
    save_file(source.state_dict(), str(repo / "snapshots" / "abc123" / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = registry.create("model", "resnet10t", weights="DEFAULT", num_classes=2, in_chans=1)
    assert model.fc.out_features == 2 and model.conv1[0].in_channels == 1
    assert torch.allclose(model.conv1[0].weight, source.conv1[0].weight.sum(dim=1, keepdim=True))  # timm's adaptation
    assert any("resnet10t.c3_in1k" in line for line in model.torchtk_report)


def test_a_wrong_architecture_argument_is_an_input_error(registry):
    with pytest.raises(UserInputError, match=r"timm's resnet10t does not take these arguments"):
        registry.create("model", "resnet10t", options={"no_such_argument": 1})
