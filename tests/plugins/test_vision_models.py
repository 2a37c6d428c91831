"""The torchvision classifiers: the catalog against torchvision, head and stem surgery on
all 80, torchvision weights from a fabricated hub cache (no network), local files,
listing without torchvision.

Most architectures are built on the meta device (``empty_weights``), so no test pays
for initialising 100M parameters; the cheap families are also built and run for real.

``python tests/plugins/test_vision_models.py`` prints the catalog rows of the installed
torchvision, to paste into ``torchtk/plugins/_vision_catalog.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import subprocess
import sys
import warnings

import pytest

CHEAP = ["efficientnet_b0", "googlenet", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_y_400mf",
         "resnet18", "shufflenet_v2_x0_5", "squeezenet1_1"]


# -- helpers ---------------------------------------------------------------------------------

def torchvision_rows() -> dict[str, dict]:
    """The catalog rows as the installed torchvision describes them."""
    from torchvision import models

    rows = {}
    for name in models.list_models(module=models):
        builder = models.get_model_builder(name)
        enum = models.get_model_weights(name)
        default = enum.DEFAULT
        architecture = inspect.signature(builder).return_annotation
        rows[name] = dict(
            name=name, family=builder.__module__.rsplit(".", 1)[-1],
            weights={member.name: member.transforms().crop_size[0] for member in enum},
            default=default.name, min_size=default.meta["min_size"][0], num_params=default.meta["num_params"],
            acc1=default.meta["_metrics"]["ImageNet-1K"]["acc@1"],
            dropout="dropout" in inspect.signature(architecture.__init__).parameters,
        )
    return rows


def render_row(row: dict) -> str:
    head = f"    Entry({row['name']!r}, {row['family']!r}, {row['weights']!r},"
    tail = f"{row['default']!r}, {row['min_size']}, {row['num_params']}, {row['acc1']}, {row['dropout']}),"
    line = head + " " + tail
    return (line if len(line) <= 118 else head + "\n          " + tail).replace("'", '"')


@contextlib.contextmanager
def empty_weights():
    """Build modules with every parameter and buffer on the meta device (no memory, no
    init cost), as accelerate's ``init_empty_weights`` does; works where ``with
    torch.device("meta")`` does not (RegNet computes its widths with tensors)."""
    from torch import nn

    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def create(name, **params):
    import torchtk

    return torchtk.registry.create("model", name, **params)


def architecture(name, **kwargs):
    from torchvision import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return models.get_model(name, **kwargs)


def smallest_per_family() -> list[str]:
    from torchtk.plugins._vision_catalog import MODELS

    best: dict = {}
    for entry in MODELS.values():
        if entry.family not in best or entry.num_params < best[entry.family].num_params:
            best[entry.family] = entry
    best["vision_transformer"] = MODELS["vit_b_32"]  # 49 tokens at 224 px instead of 196
    return [entry.name for entry in best.values()]


def probe_size(name: str) -> int:
    from torchtk.plugins._vision_catalog import MODELS

    entry = MODELS[name]
    if entry.family in ("vision_transformer", "swin_transformer", "maxvit"):
        return 224  # the architecture's fixed (or patch-aligned) size without weights
    return max(entry.min_size, 32)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A torch hub cache in tmp_path; ``hub.put(model, weights, state)`` writes a weights file
    under the name torchvision's URL gives it."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"

    class Hub:
        checkpoints = folder

        @staticmethod
        def put(model_name, weights_name, state):
            from torchvision import models

            member = models.get_model_weights(model_name)[weights_name]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / os.path.basename(member.url)
            torch.save(state, path)
            return path

    return Hub()


@pytest.fixture(scope="module")
def resnet18_state():
    import torch

    torch.manual_seed(1)
    return {k: v.clone() for k, v in architecture("resnet18").state_dict().items()}


# -- the catalog -------------------------------------------------------------------------------

def test_catalog_is_the_installed_torchvision_classifiers():
    import torchvision

    from torchtk.plugins._vision_catalog import FAMILIES, MODELS, TORCHVISION_VERSION, Entry

    rows = torchvision_rows()
    assert len(rows) == 80
    missing = [render_row(row) for name, row in rows.items() if name not in MODELS]
    assert not missing, "add to _vision_catalog.MODELS:\n" + "\n".join(missing)
    assert set(MODELS) == set(rows), f"not in torchvision {torchvision.__version__}: {set(MODELS) - set(rows)}"
    drifted = [render_row(row) for name, row in rows.items() if MODELS[name] != Entry(**row)]
    assert not drifted, "rows that differ from torchvision; replace them with:\n" + "\n".join(drifted)
    assert {entry.family for entry in MODELS.values()} == set(FAMILIES)
    assert torchvision.__version__.split("+")[0] == TORCHVISION_VERSION


def test_catalog_min_sizes_are_square_and_names_resolve():
    from torchvision import models

    from torchtk.plugins._vision_catalog import MODELS

    for name, entry in MODELS.items():
        enum = models.get_model_weights(name)
        assert enum.DEFAULT.meta["min_size"] == (entry.min_size, entry.min_size)
        assert set(enum.__members__) == set(entry.weights) | {"DEFAULT"}


def test_head_and_stem_of_all_80_architectures_are_the_catalogs():
    """find_head / find_input_conv on every architecture (aux heads on) equal the catalog's
    family entries, which tk show prints."""
    from torchtk.plugins._heads import find_head, find_input_conv
    from torchtk.plugins._vision_catalog import FAMILIES, MODELS

    wrong = {}
    with empty_weights():
        for name, entry in MODELS.items():
            model = architecture(name)
            family = FAMILIES[entry.family]
            found = (tuple(find_head(model)), find_input_conv(model))
            if found != (family.head, family.stem):
                wrong[name] = found
    assert wrong == {}


@pytest.mark.parametrize("name", smallest_per_family())
def test_num_classes_replaces_the_head_of_every_family(name):
    """Through the plugin, on the meta device: the head has 5 outputs, 1-channel input works."""
    import torch

    from torchtk.plugins._heads import find_head, get_submodule, head_classes

    with empty_weights():
        model = create(name, num_classes=5, in_channels=1)
    assert all(head_classes(get_submodule(model, head)) == 5 for head in find_head(model))
    size = probe_size(name)
    model.eval()
    assert model(torch.empty(2, 1, size, size, device="meta")).shape == (2, 5)


@pytest.mark.parametrize("name", CHEAP)
def test_head_replacement_runs_for_real(name):
    import torch

    model = create(name, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)


def test_every_model_is_listed_and_conforms():
    from torchtk.testing import check_plugin, registry_with

    registry = registry_with()
    assert {"resnet18", "vit_b_16", "squeezenet1_0", "inception_v3"} <= set(registry.names("model"))
    assert len([n for n in registry.names("model") if registry.describe("model", n)["plugin"].endswith("vision_models")]) == 80
    assert check_plugin(registry, "torchtk.plugins.vision_models") == []


@pytest.mark.parametrize("args", [["list", "models"], ["show", "model", "resnet18"], ["show", "model", "resnet50"]])
def test_listing_and_showing_models_imports_neither_torch_nor_torchvision(args):
    code = (
        "import sys, json\n"
        "from torchtk.core.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(json.dumps(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == []
    if args[0] == "list":
        assert result.stdout.count("vision_models") == 80
    else:
        text = " ".join(result.stdout.split())  # tk show reflows prose to the terminal's width
        assert "IMAGENET1K_V1" in text and "First convolution: conv1" in text


# -- torchvision weights from the hub cache ----------------------------------------------------

def test_a_weights_name_not_in_the_cache_is_one_offline_error(hub):
    from torchtk.core.errors import UserInputError

    with pytest.raises(UserInputError) as error:
        create("resnet18", weights="DEFAULT", num_classes=4)
    message = str(error.value)
    assert message.startswith("model.params.weights:") and "never downloads" in message
    assert "resnet18-f37072fd.pth" in message and str(hub.checkpoints) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert not hub.checkpoints.exists() or not any(hub.checkpoints.iterdir())  # nothing was fetched


def test_an_unknown_weights_name_lists_the_available_ones(hub):
    from torchtk.core.errors import UserInputError

    with pytest.raises(UserInputError, match=r"resnet50 has no weights 'IMAGENET1K_V3'; available: IMAGENET1K_V1, "
                                             r"IMAGENET1K_V2, DEFAULT"):
        create("resnet50", weights="IMAGENET1K_V3")


def test_resnet18_with_four_classes_keeps_the_cached_backbone_and_a_fresh_head(hub, resnet18_state):
    import torch

    hub.put("resnet18", "IMAGENET1K_V1", resnet18_state)
    model = create("resnet18", weights="IMAGENET1K_V1", num_classes=4)
    state = model.state_dict()
    backbone = [k for k in resnet18_state if not k.startswith("fc.")]
    assert all(torch.equal(state[k], resnet18_state[k]) for k in backbone)
    assert state["fc.weight"].shape == (4, 512) and state["fc.bias"].shape == (4,)
    assert model.torchtk_loaded_parameters == {n for n, _ in model.named_parameters()} - {"fc.weight", "fc.bias"}
    assert model.torchtk_report[0].startswith("weights: 120 tensors loaded from torchvision IMAGENET1K_V1")
    assert "head: fc.weight, fc.bias newly initialised (4 classes)" in model.torchtk_report
    # DEFAULT is the same file; without num_classes the 1000-class head loads too
    default = create("resnet18", weights="DEFAULT")
    assert torch.equal(default.fc.weight, resnet18_state["fc.weight"])
    assert len(default.torchtk_loaded_parameters) == len(list(default.parameters()))


def test_the_fresh_head_is_initialised_like_a_new_linear_layer(hub, resnet18_state):
    import torch

    hub.put("resnet18", "IMAGENET1K_V1", resnet18_state)
    a = create("resnet18", weights="IMAGENET1K_V1", num_classes=4)
    b = create("resnet18", weights="IMAGENET1K_V1", num_classes=4)
    assert not torch.equal(a.fc.weight, b.fc.weight)  # random, not copied or zero
    bound = 1 / 512 ** 0.5
    assert a.fc.weight.abs().max() <= bound and a.fc.bias.abs().max() <= bound


def test_in_channels_one_sums_the_pretrained_filters(hub, resnet18_state):
    import torch

    hub.put("resnet18", "IMAGENET1K_V1", resnet18_state)
    model = create("resnet18", weights="IMAGENET1K_V1", num_classes=2, in_channels=1)
    torch.testing.assert_close(model.conv1.weight, resnet18_state["conv1.weight"].sum(dim=1, keepdim=True))
    assert "conv1.weight" in model.torchtk_loaded_parameters
    assert any("3 to 1 input channels (summed" in line for line in model.torchtk_report)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 2)
    # a grey image gives the response the RGB filters gave to (g, g, g)
    grey = torch.rand(1, 1, 16, 16)
    rgb = torch.nn.functional.conv2d(grey.expand(1, 3, 16, 16), resnet18_state["conv1.weight"], stride=2, padding=3)
    torch.testing.assert_close(model.conv1(grey), rgb, rtol=1e-4, atol=1e-5)


def test_in_channels_four_repeats_and_rescales_the_filters(hub, resnet18_state):
    import torch

    hub.put("resnet18", "IMAGENET1K_V1", resnet18_state)
    model = create("resnet18", weights="DEFAULT", in_channels=4)
    rgb = resnet18_state["conv1.weight"]
    expected = torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4
    torch.testing.assert_close(model.conv1.weight, expected)


def test_densenet_files_with_the_old_key_names_load(hub):
    import re

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = architecture("densenet121").state_dict()
    # the files predate num_batches_tracked and name norm1 "norm.1"
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()
           if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in old)
    hub.put("densenet121", "IMAGENET1K_V1", old)
    model = create("densenet121", weights="IMAGENET1K_V1", num_classes=3)
    layer = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(model.state_dict()[layer], state[layer])


def test_googlenet_auxiliary_heads_are_dropped_or_replaced(hub):
    import torch

    torch.manual_seed(2)
    state = architecture("googlenet", aux_logits=True, init_weights=False).state_dict()
    hub.put("googlenet", "IMAGENET1K_V1", state)
    plain = create("googlenet", weights="IMAGENET1K_V1", num_classes=3)
    assert plain.aux1 is None and plain.aux2 is None and plain.transform_input
    assert any("auxiliary heads (aux1, aux2) not used" in line for line in plain.torchtk_report)
    assert plain.train()(torch.rand(2, 3, 32, 32)).shape == (2, 3)  # a tensor, not a tuple

    aux = create("googlenet", weights="IMAGENET1K_V1", num_classes=3, aux_logits=True).train()
    outputs = aux(torch.rand(2, 3, 32, 32))
    assert [o.shape for o in outputs] == [(2, 3)] * 3
    assert torch.equal(aux.aux1.fc1.weight, state["aux1.fc1.weight"])  # only the last layer is new
    assert {"aux1.fc2.weight", "aux2.fc2.weight", "fc.weight"}.isdisjoint(aux.torchtk_loaded_parameters)

    grey = create("googlenet", weights="IMAGENET1K_V1", num_classes=3, in_channels=1)
    assert not grey.transform_input and grey.eval()(torch.rand(1, 1, 32, 32)).shape == (1, 3)


def test_inception_aux_head_is_replaced_too():
    import torch

    from torchtk.plugins._heads import find_head

    with empty_weights():
        model = create("inception_v3", num_classes=6, aux_logits=True)
    assert find_head(model) == ["fc", "AuxLogits.fc"]
    assert model.fc.out_features == model.AuxLogits.fc.out_features == 6
    logits, aux = model.train()(torch.empty(2, 3, 299, 299, device="meta"))
    assert logits.shape == aux.shape == (2, 6)


# -- local files -------------------------------------------------------------------------------

def test_a_torchtk_checkpoint_with_another_head_loads_with_the_head_reported(tmp_path, resnet18_state):
    import torch

    stage1 = create("resnet18", num_classes=3, in_channels=1)
    torch.save({"format": 2, "epoch": 4, "spec": {}, "model": stage1.state_dict(), "optimizer": {}},
               tmp_path / "best.pt")
    stage2 = create("resnet18", weights=str(tmp_path / "best.pt"), num_classes=5, in_channels=1)
    old, new = stage1.state_dict(), stage2.state_dict()
    assert all(torch.equal(new[k], old[k]) for k in old if not k.startswith("fc."))
    assert new["fc.weight"].shape == (5, 512)
    assert stage2.torchtk_report[0].endswith("best.pt (torchtk checkpoint)")
    assert "head: fc.weight, fc.bias newly initialised (5 classes)" in stage2.torchtk_report
    # the same number of classes (or none given): the head loads as well
    same = create("resnet18", weights=str(tmp_path / "best.pt"), in_channels=1)
    assert torch.equal(same.fc.weight, stage1.fc.weight) and "fc.weight" in same.torchtk_loaded_parameters


def test_a_torchvision_pth_file_loads_like_the_name(tmp_path, resnet18_state):
    import torch

    torch.save(resnet18_state, tmp_path / "resnet18.pth")
    model = create("resnet18", weights=str(tmp_path / "resnet18.pth"), num_classes=10, in_channels=1)
    torch.testing.assert_close(model.conv1.weight, resnet18_state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.layer4[1].bn2.running_var, resnet18_state["layer4.1.bn2.running_var"])


def test_other_mismatches_fail_listing_the_keys(tmp_path, resnet18_state):
    import torch

    from torchtk.core.errors import UserInputError

    state = dict(resnet18_state)
    del state["layer1.0.conv1.weight"]
    state["layer2.0.bn1.weight"] = torch.ones(7)
    state["extra.weight"] = torch.ones(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(UserInputError) as error:
        create("resnet18", weights=str(tmp_path / "bad.pt"), num_classes=4)
    message = str(error.value)
    assert "1 keys with another shape: layer2.0.bn1.weight: file (7) vs model (128)" in message
    assert "1 keys missing from the file: layer1.0.conv1.weight" in message
    assert "1 keys not in the model: extra.weight" in message and "strict_weights" in message

    lenient = create("resnet18", weights=str(tmp_path / "bad.pt"), num_classes=4, strict_weights=False)
    assert "layer1.0.conv1.weight" not in lenient.torchtk_loaded_parameters
    assert torch.equal(lenient.layer1[0].bn1.weight, resnet18_state["layer1.0.bn1.weight"])
    assert any(line.startswith("weights: skipped (strict_weights is false)") for line in lenient.torchtk_report)


def test_many_mismatched_keys_are_counted(tmp_path):
    import torch

    from torchtk.core.errors import UserInputError

    torch.save(architecture("resnet34").state_dict(), tmp_path / "r34.pt")
    with pytest.raises(UserInputError, match=r"96 keys not in the model: layer1\.2\.conv1\.weight, .*\.\.\. \(96 in all\)"):
        create("resnet18", weights=str(tmp_path / "r34.pt"))


def test_a_missing_file_names_the_path():
    from torchtk.core.errors import UserInputError

    with pytest.raises(UserInputError, match=r"model.params.weights: no file 'runs/nothing.pt' \(relative to "):
        create("resnet18", weights="runs/nothing.pt")


# -- other params ------------------------------------------------------------------------------

def test_dropout_goes_to_the_architecture_that_takes_it():
    from torchtk.core.errors import UserInputError

    model = create("mobilenet_v3_small", num_classes=2, dropout=0.1)
    assert model.classifier[2].p == 0.1
    with pytest.raises(UserInputError, match="model.params.dropout: resnet18 takes no dropout"):
        create("resnet18", dropout=0.1)
    with pytest.raises(UserInputError, match="model.params.aux_logits: resnet18 has no auxiliary heads"):
        create("resnet18", aux_logits=True)


def test_params_are_strict():
    from torchtk.core.errors import ParamsError

    with pytest.raises(ParamsError):
        create("resnet18", num_classes="4")
    with pytest.raises(ParamsError):
        create("resnet18", num_clases=4)
    with pytest.raises(ParamsError):
        create("resnet18", num_classes=0)


def test_without_weights_the_report_says_so():
    model = create("squeezenet1_1", num_classes=7)
    assert model.classifier[1].out_channels == 7 and model.num_classes == 7
    assert model.torchtk_report == ["weights: none (squeezenet1_1 randomly initialised)"]
    assert not getattr(model, "torchtk_loaded_parameters", frozenset())


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    print("\n".join(render_row(row) for row in torchvision_rows().values()))
