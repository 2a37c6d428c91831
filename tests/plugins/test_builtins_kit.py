"""Every built-in component against the plugin contract, by behaviour, with the plugin kit.

This is the CI gate of ``torchtk.testing.check_plugin``: each built-in plugin is checked
as a third-party one would be (built with its defaults or the params below, used on a
sample batch or a two-epoch run, listed in a child process without torch). Components
that need params get them here; the few that cannot be checked here are skipped with
the reason, and the test fails if the kit skips anything this file does not name.
"""

from __future__ import annotations

import pytest

import torchtk
from torchtk.testing import check_plugin

CONSTANT = {"name": "constant", "params": {"factor": 0.5, "total_iters": 2}}

PARAMS = {
    "model:mlp": {"in_features": 2, "out_features": 1},
    "scheduler:lambda": {"lr_lambda": "0.95 ** epoch"},
    "scheduler:multiplicative": {"lr_lambda": "0.97"},
    "scheduler:step": {"step_size": 2},
    "scheduler:multi_step": {"milestones": [2, 4]},
    "scheduler:exponential": {"gamma": 0.9},
    "scheduler:cosine_annealing": {"T_max": 6},
    "scheduler:cyclic": {"base_lr": 0.01, "max_lr": 0.1},
    "scheduler:one_cycle": {"max_lr": 0.1, "total_steps": 6},
    "scheduler:cosine_annealing_warm_restarts": {"T_0": 2},
    "scheduler:sequential": {"schedulers": [CONSTANT, {"name": "exponential", "params": {"gamma": 0.9}}],
                             "milestones": [2]},
    "scheduler:chained": {"schedulers": [CONSTANT, {"name": "exponential", "params": {"gamma": 0.9}}]},
    "scheduler:warmup": {"length": 2, "then": {"name": "exponential", "params": {"gamma": 0.9}}},
    "freeze:freeze_until": {"module": "fc"},
    "freeze:unfreeze_at": {"stages": [{"epoch": 2, "modules": ["fc"]}]},
    "freeze:layer_lr": {"groups": [{"modules": ["fc"], "lr": 0.05, "name": "head"}]},
    "freeze:layer_decay": {"decay": 0.5},
    "init:constant": {"val": 0.5},
    "init:sparse": {"sparsity": 0.5},
    "callback:grad_clip": {"max_norm": 1.0},
    "transform:resize": {"size": [16]},
    "transform:center_crop": {"size": [16]},
    "transform:random_resized_crop": {"size": [16]},
    "transform:random_crop": {"size": [16]},
    "transform:pad": {"padding": [2]},
    "transform:random_rotation": {"degrees": 10.0},
    "transform:to_dtype": {"dtype": "float32"},
    "transform:gaussian_blur": {"kernel_size": 3},
    "transform:random_posterize": {"bits": 4},
    "transform:random_solarize": {"threshold": 0.5},
    "transform:random_adjust_sharpness": {"sharpness_factor": 2.0},
    "transform:model_preset": {"weights": "ResNet18_Weights.IMAGENET1K_V1"},
}

DOWNLOADS = "a torchvision download (or a root already holding it); tests/plugins/test_images.py uses a fake copy"
SKIP = {
    "dataset:mnist": DOWNLOADS,
    "dataset:fashion_mnist": DOWNLOADS,
    "dataset:cifar10": DOWNLOADS,
    "dataset:cifar100": DOWNLOADS,
    "optimizer:sparse_adam": "needs sparse gradients (nn.Embedding(sparse=True)); tests/plugins/test_optimizers.py "
                             "steps it on them",
}


def vision_skips() -> dict[str, str]:
    """Each torchvision family is checked by its smallest member; building all 80 takes about
    45 s (measured on 2 cores); tests/plugins/test_vision_models.py covers every head."""
    from tests.plugins.test_vision_models import smallest_per_family
    from torchtk.plugins._vision_catalog import MODELS

    checked = set(smallest_per_family())
    return {f"model:{name}": f"torchvision family {entry.family!r} is checked through its smallest member"
            for name, entry in MODELS.items() if name not in checked}


def image_folder_params(tmp_path) -> dict:
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 6), (40 * i, 80, 120)).save(tmp_path / label / f"{i}.png")
    return {"root": str(tmp_path)}


BUILTINS = sorted(name for name, info in torchtk.registry.host.plugins.items() if info.builtin)


@pytest.mark.parametrize("plugin", BUILTINS)
def test_builtin_plugin_behaves_as_the_contract_says(plugin, tmp_path):
    skip = {**SKIP, **vision_skips()}
    params = {**PARAMS, "dataset:image_folder": image_folder_params(tmp_path)}
    report = check_plugin(plugin, torchtk.registry, params=params, skip=skip)
    assert report == [], str(report)
    named = {f"{k.split(' ', 1)[0]}:{k.split(' ', 1)[1].strip(chr(39))}" for k in report.skipped
             if not k.startswith("listing")}
    assert named <= set(skip), f"the kit skipped components this test does not name: {report.skipped}"
    assert not any(k.startswith("listing") for k in report.skipped), report.skipped
    assert report.checked or named, "nothing was checked"
