"""Weight initialisation (kind ``init``): each built-in against torch.nn.init itself, the
selection by layer type and module name, loaded tensors, and the errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import torchtk
from torchtk.core.errors import TorchtkError
from torchtk.testing import check_plugin

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class Net(nn.Module):
    """Convolutions, BatchNorm and a Linear classifier, with names worth matching."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)
        self.classifier = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))

    def forward(self, x):
        return self.classifier(self.fc(self.pool(self.features(x)).flatten(1)))


def net():
    torch.manual_seed(123)
    return Net()


def by_hand(model, types, function, **kwargs):
    """The loop a tutorial writes: every layer of ``types`` in model.modules() order, zero bias."""
    for module in model.modules():
        if isinstance(module, types):
            function(module.weight, **kwargs)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def same_tensors(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def apply(name, model, loaded=frozenset(), seed=0, **params):
    init = torchtk.registry.create("init", name, **params)
    torch.manual_seed(seed)
    return init(model, loaded), init


WEIGHTED = (nn.Linear, *CONV)
CASES = [
    ("xavier_uniform", {"gain": 2.0}, WEIGHTED, nn.init.xavier_uniform_, {"gain": 2.0}),
    ("xavier_normal", {"gain": "relu"}, WEIGHTED, nn.init.xavier_normal_, {"gain": 2 ** 0.5}),
    ("kaiming_uniform", {"a": 0.1, "mode": "fan_out"}, WEIGHTED, nn.init.kaiming_uniform_,
     {"a": 0.1, "mode": "fan_out"}),
    ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "relu"}, WEIGHTED, nn.init.kaiming_normal_,
     {"mode": "fan_out", "nonlinearity": "relu"}),
    ("normal", {"mean": 0.5, "std": 0.02}, WEIGHTED, nn.init.normal_, {"mean": 0.5, "std": 0.02}),
    ("uniform", {"a": -0.3, "b": 0.1}, WEIGHTED, nn.init.uniform_, {"a": -0.3, "b": 0.1}),
    ("trunc_normal", {"std": 0.02, "a": -0.03, "b": 0.03}, WEIGHTED, nn.init.trunc_normal_,
     {"std": 0.02, "a": -0.03, "b": 0.03}),
    ("constant", {"val": 0.25}, WEIGHTED, nn.init.constant_, {"val": 0.25}),
    ("zeros", {}, WEIGHTED, nn.init.zeros_, {}),
    ("ones", {}, WEIGHTED, nn.init.ones_, {}),
    ("orthogonal", {"gain": 1.5}, WEIGHTED, nn.init.orthogonal_, {"gain": 1.5}),
    ("dirac", {}, (nn.Conv1d, nn.Conv2d, nn.Conv3d), nn.init.dirac_, {}),
    ("eye", {}, (nn.Linear,), nn.init.eye_, {}),
    ("sparse", {"sparsity": 0.5, "std": 0.1}, (nn.Linear,), nn.init.sparse_, {"sparsity": 0.5, "std": 0.1}),
]


@pytest.mark.parametrize("name, params, types, function, kwargs", CASES, ids=[c[0] for c in CASES])
def test_each_init_is_torchs_own_function_bit_for_bit(name, params, types, function, kwargs):
    ours, theirs = net(), net()
    names, init = apply(name, ours, **params)
    torch.manual_seed(0)
    by_hand(theirs, types, function, **kwargs)
    assert same_tensors(ours, theirs)
    expected = [f"{n}.{t}" for n, m in theirs.named_modules() if isinstance(m, types) for t in ("weight", "bias")]
    assert names == expected
    assert not same_tensors(ours, net()) or name == "dirac"  # it did something (dirac: only the convs)


def test_the_default_layers_are_convolutions_and_linear_not_batchnorm():
    model, before = net(), net()
    names, init = apply("normal", model)
    assert "features.1.weight" not in names and torch.equal(model.features[1].weight, before.features[1].weight)
    assert init.torchtk_report == ["normal: 10 tensors initialised (Conv2d 4, Linear 6)"]


def test_initialize_weights_is_the_tutorial_loop():
    """torchvision's VGG._initialize_weights, the PyTorch tutorials' initialize_weights."""
    ours, theirs = net(), net()
    apply("initialize_weights", ours)
    torch.manual_seed(0)
    for m in theirs.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)
    assert same_tensors(ours, theirs)


def test_loaded_tensors_are_kept_unless_asked():
    model, before = net(), net()
    loaded = frozenset(n for n, _ in model.named_parameters() if n.startswith("features."))
    names, init = apply("kaiming_normal", model, loaded)
    assert names == ["fc.weight", "fc.bias", "classifier.0.weight", "classifier.0.bias",
                     "classifier.2.weight", "classifier.2.bias"]
    assert all(torch.equal(a, b) for a, b in zip(model.features.parameters(), before.features.parameters()))
    assert init.torchtk_report == ["kaiming_normal: 6 tensors initialised (Linear 6); "
                                   "4 loaded tensors kept (include_loaded: false)"]
    names, _ = apply("kaiming_normal", model, loaded, include_loaded=True)
    assert "features.0.weight" in names and "features.3.bias" in names


def test_selection_by_layer_type():
    model, before = net(), net()
    names, _ = apply("xavier_uniform", model, layers=["Conv2d"])
    assert names == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"]
    assert torch.equal(model.fc.weight, before.fc.weight)
    names, init = apply("constant", model, layers=["BatchNorm2d"], val=0.5, bias="keep")
    assert names == ["features.1.weight"] and torch.all(model.features[1].weight == 0.5)
    assert torch.equal(model.features[1].bias, before.features[1].bias)


def test_a_base_class_name_matches_its_subclasses():
    attention = nn.MultiheadAttention(4, 2)  # out_proj is a NonDynamicallyQuantizableLinear
    names, _ = apply("zeros", attention, layers=["Linear"])
    assert names == ["out_proj.weight", "out_proj.bias"]


@pytest.mark.parametrize("modules, expected", [
    (["fc"], ["fc.weight", "fc.bias"]),
    (["classifier.*"], ["classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias"]),
    (["classifier"], ["classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias"]),
    (["fc", "features.3"], ["features.3.weight", "features.3.bias", "fc.weight", "fc.bias"]),
], ids=["exact", "glob", "subtree", "two"])
def test_selection_by_module_name(modules, expected):
    model, before = net(), net()
    names, _ = apply("normal", model, modules=modules, std=0.1)
    assert names == expected
    untouched = [n for n, _ in model.named_parameters() if n not in expected]
    assert all(torch.equal(model.get_parameter(n), before.get_parameter(n)) for n in untouched)


def test_a_module_pattern_matching_nothing_names_close_modules():
    with pytest.raises(ValueError, match=r"modules: 'clasifier\.\*' matches no module; did you mean: classifier"):
        apply("normal", net(), modules=["clasifier.*"])
    with pytest.raises(ValueError, match="top-level modules: classifier, fc, features, pool"):
        apply("normal", net(), modules=["zzz"])


def test_an_unknown_layer_type_suggests_one():
    with pytest.raises(ValueError, match="unknown layer type 'Conv2D'.*did you mean: Conv2d"):
        apply("normal", net(), layers=["Conv2D"])


def test_no_layer_of_the_types_is_an_error():
    with pytest.raises(ValueError, match="no layer of type Conv3d in the modules \\['fc'\\]"):
        apply("normal", net(), layers=["Conv3d"], modules=["fc"])


def test_a_fan_based_init_on_a_vector_names_the_tensor():
    with pytest.raises(ValueError, match=r"kaiming_normal cannot initialise features\.1\.weight \(shape \[4\]\)"):
        apply("kaiming_normal", net(), layers=["BatchNorm2d"])


@pytest.mark.parametrize("bias, check", [
    ("keep", lambda b, old: torch.equal(b, old)),
    (0.1, lambda b, old: torch.all(b == 0.1)),
    ("zeros", lambda b, old: torch.all(b == 0)),
])
def test_bias_options(bias, check):
    model, before = net(), net()
    apply("xavier_normal", model, modules=["fc"], bias=bias)
    assert check(model.fc.bias, before.fc.bias)


def test_bias_same_uses_the_weight_init():
    ours, theirs = net(), net()
    apply("normal", ours, modules=["fc"], std=0.1, bias="same")
    torch.manual_seed(0)
    nn.init.normal_(theirs.fc.weight, std=0.1)
    nn.init.normal_(theirs.fc.bias, std=0.1)
    assert same_tensors(ours, theirs)


@pytest.mark.parametrize("name, params, fragment", [
    ("normal", {"std": 0.0}, "greater than 0"),
    ("uniform", {"a": 1.0, "b": 0.0}, "a must be below b"),
    ("trunc_normal", {"a": 2.0, "b": 2.0}, "a must be below b"),
    ("kaiming_normal", {"mode": "fan_both"}, "'fan_in' or 'fan_out'"),
    ("kaiming_normal", {"nonlinearity": "gelu"}, "relu"),
    ("kaiming_normal", {"bias": "same"}, "'zeros' or 'keep'"),
    ("xavier_uniform", {"gain": "swish"}, "leaky_relu"),
    ("sparse", {"sparsity": 1.0}, "less than 1"),
    ("constant", {}, "val"),
    ("normal", {"layers": []}, "at least 1"),
    ("normal", {"std": "0.1"}, "valid number"),
])
def test_params_are_validated(name, params, fragment):
    with pytest.raises((ValidationError, TorchtkError), match=fragment):
        torchtk.registry.create("init", name, **params)


def test_tied_weights_are_initialised_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    names, init = apply("orthogonal", model)
    assert names == ["0.weight", "0.bias"]


def test_the_plugin_conforms_and_lists_without_torch():
    assert check_plugin(torchtk.registry, "torchtk.plugins.init") == []
    code = ("import sys, json\nfrom torchtk.core.cli import main\n"
            "try:\n    main(['list', 'init'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "kaiming_normal" in out and json.loads(out.splitlines()[-1]) is False


def test_a_run_applies_inits_in_spec_order_and_reports_them(small_spec):
    from torchtk.core.assembly import build_parts
    from torchtk.core.distributed import SingleProcess
    from torchtk.core.spec import load_resolved

    spec = copy.deepcopy(small_spec)
    spec["init"] = [{"name": "normal", "params": {"std": 0.5}}, {"name": "zeros", "params": {"modules": ["2"]}}]
    parts = build_parts(load_resolved(spec), SingleProcess(torch.device("cpu")), upto="init")
    assert torch.all(parts.model[2].weight == 0) and parts.model[0].weight.std() > 0.2
    assert "init[0]: normal: 4 tensors initialised (Linear 4)" in parts.notes
    assert "init[1]: zeros: 2 tensors initialised (Linear 2)" in parts.notes


def test_a_bad_pattern_in_a_spec_is_an_input_error(tk, spec_file, small_spec):
    small_spec["init"] = [{"name": "normal", "params": {"modules": ["22"]}}]
    result = tk("summary", spec_file(small_spec))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "init[0]" in result.stderr and "'22' matches no module; did you mean: 2" in result.stderr
