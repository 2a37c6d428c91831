"""The catalog is data that matches the installed smp, and listing never imports smp or torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from torchtk_smp import _catalog

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "make_catalog.py"
REGENERATE = "python contrib/torchtk-smp/tools/make_catalog.py"


def test_catalog_is_what_the_generator_writes_from_the_installed_smp():
    import segmentation_models_pytorch as smp

    spec = importlib.util.spec_from_file_location("make_smp_catalog", TOOLS)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert _catalog.SMP_VERSION == smp.__version__, f"smp changed: run {REGENERATE}"
    assert Path(_catalog.__file__).read_text() == generator.render(), f"the catalog drifted: run {REGENERATE}"


def test_every_architecture_and_encoder_is_listed():
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.encoders import get_encoder_names

    assert list(_catalog.ARCHITECTURES) == list(smp.MODEL_ARCHITECTURES_MAPPING)
    assert {"unet", "unetplusplus", "fpn", "deeplabv3plus", "pspnet", "segformer"} <= set(_catalog.ARCHITECTURES)
    assert list(_catalog.ENCODERS) == get_encoder_names()


def test_listing_imports_neither_smp_nor_torch():
    code = ("import sys, json; from torchtk.core.registry import Registry; r = Registry(); "
            "models = [c.summary for c in r.components('model') if c.plugin == 'smp']; "
            "losses = [c.name for c in r.components('loss') if c.plugin == 'smp']; "
            "r.describe('model', 'smp::fpn'); "
            "print(json.dumps([len(models), losses, 'segmentation_models_pytorch' in sys.modules, "
            "'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    models, losses, smp_imported, torch_imported = json.loads(out)
    assert models == len(_catalog.ARCHITECTURES) - 1  # unet: the built-in keeps the plain name
    assert losses == ["lovasz_hinge", "lovasz_softmax", "mcc"]
    assert not smp_imported and not torch_imported
