"""The catalog is data that matches the installed timm, and listing never imports timm or torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from torchtk_timm import _catalog

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "make_catalog.py"
REGENERATE = "python contrib/torchtk-timm/tools/make_catalog.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_catalog", TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalog_is_what_the_generator_writes_from_the_installed_timm():
    import timm

    assert _catalog.TIMM_VERSION == timm.__version__, f"timm changed: run {REGENERATE}"
    assert Path(_catalog.__file__).read_text() == _generator().render(), f"the catalog drifted: run {REGENERATE}"


def test_every_timm_architecture_and_pretrained_tag_is_listed():
    import timm

    assert list(_catalog.MODELS) == timm.list_models()
    if timm.__version__ == "1.0.31":
        assert len(_catalog.MODELS) == 1371
    tags = {f"{name}.{tag}" for name, entry in _catalog.MODELS.items() for tag in entry[2]}
    assert tags == set(timm.list_pretrained())


def test_optimizers_are_timms_minus_what_torch_has():
    import timm.optim

    skipped = _generator().SKIPPED_OPTIMIZERS
    expected = [n for n in timm.optim.list_optimizers() if n not in skipped and not n.startswith(("bnb", "fused"))]
    assert list(_catalog.OPTIMIZERS) == expected
    assert {"lamb", "lion", "adan", "lars", "madgrad", "adabelief", "adopt"} <= set(_catalog.OPTIMIZERS)
    assert not {"adam", "sgd", "adamw"} & set(_catalog.OPTIMIZERS)  # torchtk's built-ins from torch.optim


def test_listing_imports_neither_timm_nor_torch():
    code = ("import sys, json; from torchtk.core.registry import Registry; r = Registry(); "
            "names = r.names('model'); [c.summary for c in r.components('optimizer')]; "
            "r.describe('optimizer', 'lamb'); "
            "print(json.dumps([len(names), 'timm' in sys.modules, 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, timm_imported, torch_imported = json.loads(out)
    assert count >= 1371 and not timm_imported and not torch_imported


@pytest.mark.parametrize("name", ["convnext_nano", "resnet10t"])
def test_show_describes_from_the_catalog(name):
    from torchtk.core.registry import Registry

    info = Registry().describe("model", name)
    assert info["distribution"] == "torchtk-timm" and info["plugin"] == "timm"
    assert _catalog.MODELS[name][1] in info["description"]
    assert {p["name"] for p in info["params"]} >= {"num_classes", "in_chans", "weights"}
