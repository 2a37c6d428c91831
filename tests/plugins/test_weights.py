"""Weights files for any model factory (_weights), head and stem surgery on any model
(_heads), and the small built-in nets mlp and simple_cnn with weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchtk
from torchtk.core.errors import UserInputError
from torchtk.plugins._heads import adapt_conv_weight, adapt_input_conv, find_head, find_input_conv, replace_head
from torchtk.plugins._weights import describe_keys, is_weights_name, load_state, read_state_dict


def create(name, **params):
    return torchtk.registry.create("model", name, **params)


# -- _heads on models that are not torchvision's -----------------------------------------------

def test_find_head_of_a_sequential_is_its_last_layer():
    mlp = create("mlp", in_features=2, hidden=[4], out_features=1)
    assert find_head(mlp) == ["2"]
    assert find_head(create("simple_cnn")) == ["fc2"]


def test_find_head_takes_the_last_layer_inside_the_last_child_with_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.aux_head = nn.Linear(4, 2)
            self.classifier = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2), nn.Softmax(1))
            self.pool = nn.AdaptiveAvgPool2d(1)  # no parameters: not the head

    net = Net()
    assert find_head(net) == ["classifier.2", "aux_head"]
    assert replace_head(net, 5) == ["classifier.2", "aux_head"]
    assert net.classifier[2].out_features == net.aux_head.out_features == 5
    assert net.classifier[2].in_features == 8


def test_find_head_explains_a_model_without_one():
    with pytest.raises(ValueError, match="no child module with parameters"):
        find_head(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="holds no Linear or Conv2d"):
        find_head(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))


def test_replace_head_keeps_a_conv_heads_geometry_and_the_dtype():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.Dropout(), nn.Conv2d(8, 10, 1, bias=False))).double()
    replace_head(model, 4)
    head = model[1][1]
    assert isinstance(head, nn.Conv2d) and head.out_channels == 4 and head.kernel_size == (1, 1)
    assert head.bias is None and head.weight.dtype == torch.float64


def test_adapt_conv_weight_follows_timm():
    w = torch.randn(8, 3, 3, 3)
    torch.testing.assert_close(adapt_conv_weight(w, 1), w.sum(1, keepdim=True))
    torch.testing.assert_close(adapt_conv_weight(w, 6), torch.cat([w, w], 1) / 2)
    torch.testing.assert_close(adapt_conv_weight(w, 5), torch.cat([w, w[:, :2]], 1) * 3 / 5)
    torch.testing.assert_close(adapt_conv_weight(w.half(), 1), w.half().float().sum(1, keepdim=True).half())
    assert adapt_conv_weight(w, 3) is not w and torch.equal(adapt_conv_weight(w, 3), w)


def test_adapt_input_conv_keeps_the_bias_and_requires_grad():
    model = create("simple_cnn", in_channels=3)
    model.conv1.weight.requires_grad_(False)
    bias = model.conv1.bias.detach().clone()
    line = adapt_input_conv(model, 1)
    assert find_input_conv(model) == "conv1" and model.conv1.in_channels == 1
    assert torch.equal(model.conv1.bias, bias) and not model.conv1.weight.requires_grad
    assert line == "in_channels: conv1.weight adapted from 3 to 1 input channels (summed over channels)"
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# -- reading files -----------------------------------------------------------------------------

def test_read_state_dict_accepts_the_usual_containers(tmp_path):
    state = {"0.weight": torch.ones(2, 2), "0.bias": torch.zeros(2)}
    cases = {
        "plain.pt": (state, "state_dict"),
        "ckpt.pt": ({"format": 2, "epoch": 1, "model": state, "optimizer": {"state": {}}}, "torchtk checkpoint"),
        "lightning.ckpt": ({"state_dict": state, "epoch": 3}, "checkpoint 'state_dict'"),
        "ddp.pth": ({f"module.{k}": v for k, v in state.items()}, "state_dict"),
        "compiled.pth": ({f"_orig_mod.{k}": v for k, v in state.items()}, "state_dict"),
    }
    for name, (obj, kind) in cases.items():
        torch.save(obj, tmp_path / name)
        loaded, found = read_state_dict(tmp_path / name)
        assert found == kind and loaded.keys() == state.keys(), name


class NotWeights:
    pass


def test_read_state_dict_refuses_what_is_not_weights(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    torch.save(NotWeights(), tmp_path / "pickle.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "dict.pt")
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(UserInputError, match=r"cannot read .*text.pt' with torch.load\(weights_only=True\)"):
        read_state_dict(tmp_path / "text.pt")
    with pytest.raises(UserInputError, match=r"weights_only=True"):
        read_state_dict(tmp_path / "pickle.pt")
    with pytest.raises(UserInputError, match=r"holds a mapping with keys \['epoch', 'lr'\], not a state_dict"):
        read_state_dict(tmp_path / "dict.pt")
    with pytest.raises(UserInputError, match="no file 'nowhere.pt'"):
        read_state_dict("nowhere.pt")
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(UserInputError, match="needs the `safetensors` package"):
            read_state_dict(tmp_path / "w.safetensors")


def test_safetensors_files_load_when_the_package_is_there(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = create("mlp", in_features=2, hidden=[3], out_features=1)
    safetensors_torch.save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = create("mlp", in_features=2, hidden=[3], out_features=1, weights=str(tmp_path / "w.safetensors"))
    assert torch.equal(loaded[0].weight, model[0].weight)


def test_weights_names_are_told_from_paths(tmp_path, monkeypatch):
    assert is_weights_name("IMAGENET1K_V1") and is_weights_name("DEFAULT")
    assert not is_weights_name("best.pt") and not is_weights_name("runs/x/best") and not is_weights_name("imagenet")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "WEIGHTS").write_bytes(b"")
    assert not is_weights_name("WEIGHTS")  # an existing file is a file


def test_describe_keys_shows_the_first_few_and_the_count():
    assert describe_keys(["a", "b"]) == "a, b"
    assert describe_keys([str(i) for i in range(12)]) == "0, 1, 2, 3, 4, ... (12 in all)"


# -- load_state --------------------------------------------------------------------------------

def test_load_state_skips_and_reports_a_head_of_another_shape():
    source = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    target = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 5))
    result = load_state(target, source.state_dict(), source="x.pt", head=["2"])
    assert result.head == ["2.weight", "2.bias"] and result.loaded == ["0.weight", "0.bias"]
    assert torch.equal(target[0].weight, source[0].weight)
    assert target.torchtk_loaded_parameters == {"0.weight", "0.bias"}
    assert target.torchtk_report == ["weights: 2 tensors loaded from x.pt"]


def test_load_state_lists_every_other_mismatch():
    source = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).state_dict()
    target = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(UserInputError) as error:
        load_state(target, source, source="x.pt", head=["2"])
    assert str(error.value) == ("model.params.weights: x.pt does not fit the model: 2 keys with another shape: "
                                "0.weight: file (4, 2) vs model (6, 2), 0.bias: file (4) vs model (6)")
    assert not hasattr(target, "torchtk_loaded_parameters")  # nothing half-loaded


def test_load_state_tolerates_files_without_num_batches_tracked():
    source = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    source[1].running_mean.fill_(0.5)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    load_state(target, state, source="old.pth")
    assert torch.equal(target[1].running_mean, torch.full((2,), 0.5))


# -- mlp and simple_cnn with weights -----------------------------------------------------------

def test_simple_cnn_is_the_tutorials_network():
    model = create("simple_cnn")
    assert sum(p.numel() for p in model.parameters()) == 1_199_882  # pytorch/examples mnist Net
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    rgb = create("simple_cnn", in_channels=3, num_classes=4)
    assert rgb(torch.rand(2, 3, 32, 32)).shape == (2, 4) and rgb(torch.rand(2, 3, 16, 16)).shape == (2, 4)


def test_simple_cnn_loads_a_file_with_another_head(tmp_path):
    source = create("simple_cnn")
    torch.save(source.state_dict(), tmp_path / "mnist.pt")
    model = create("simple_cnn", num_classes=3, weights=str(tmp_path / "mnist.pt"))
    assert torch.equal(model.fc1.weight, source.fc1.weight) and model.fc2.out_features == 3
    assert model.torchtk_report == [f"weights: 6 tensors loaded from {tmp_path / 'mnist.pt'} (state_dict)",
                                    "weights: fc2.weight, fc2.bias newly initialised (the file's head has another shape)"]
    assert "fc2.weight" not in model.torchtk_loaded_parameters


def test_small_nets_have_no_torchvision_weights():
    with pytest.raises(UserInputError, match="looks like a torchvision weights name, but Sequential models have none"):
        create("simple_cnn", weights="IMAGENET1K_V1")


def test_an_mlp_loads_the_best_checkpoint_of_a_torchtk_run(small_spec):
    result = torchtk.train(small_spec)
    best = result.run_dir / "checkpoints" / "best.pt"
    trained = torch.load(best, weights_only=True)["model"]
    same = create("mlp", in_features=2, hidden=[16], out_features=1, weights=str(best))
    assert all(torch.equal(same.state_dict()[k], v) for k, v in trained.items())
    assert same.torchtk_report == [f"weights: 4 tensors loaded from {best} (torchtk checkpoint)"]
    wider = create("mlp", in_features=2, hidden=[16], out_features=3, weights=str(best))
    assert torch.equal(wider[0].weight, trained["0.weight"]) and wider[2].out_features == 3
    with pytest.raises(UserInputError, match=r"keys with another shape: 0.weight: file \(16, 2\) vs model \(8, 2\)"):
        create("mlp", in_features=2, hidden=[8], out_features=1, weights=str(best))


def test_the_small_nets_conform():
    from torchtk.testing import check_plugin, registry_with

    assert check_plugin(registry_with(), "torchtk.plugins.models") == []
