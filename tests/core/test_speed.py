"""The speed options: trainer.compile, trainer.channels_last, trainer.tf32 (torchtk.core.speed).

The one real torch.compile run is small (a 2-16-1 MLP, one epoch of 4 batches, one
compile thread) and marked ``compile``: it takes about 20 s on 2 quiet cores.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import torchtk
from torchtk.core import speed
from torchtk.core.errors import UserInputError


def tiny(small_spec, **trainer):
    spec = copy.deepcopy(small_spec)
    spec["data"]["params"] = {"n_positive": 100, "n_negative": 300}
    spec["data"]["batch_size"] = 100
    spec["trainer"].update(epochs=1, progress=False, **trainer)
    return spec


@pytest.mark.compile
def test_compiled_run_trains_and_saves_the_plain_modules_keys(small_spec, monkeypatch, tk):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "compile_threads", 1)  # no worker pool to start for one small graph
    torch._dynamo.reset()
    result = torchtk.train(tiny(small_spec, compile=True), progress=False)
    assert "trainer.compile: the model is compiled" in (result.run_dir / "train.log").read_text()
    assert not isinstance(result.model, torch._dynamo.eval_frame.OptimizedModule)
    saved = torch.load(result.last_checkpoint, weights_only=True)["model"]
    assert sorted(saved) == sorted(result.model.state_dict()) and not any("_orig_mod" in k for k in saved)
    fresh = torchtk.registry.create("model", "mlp", in_features=2, hidden=[16], out_features=1)
    fresh.load_state_dict(saved)  # the keys a plain model has: evaluate, export and fine-tuning load it
    evaluated = tk("evaluate", result.run_dir, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr


def test_compile_accepts_true_or_a_mode_and_names_the_modes_otherwise(small_spec, tk, spec_file):
    spec = tiny(small_spec, compile="fastest")
    result = tk("validate", spec_file(spec))
    assert result.exit_code == 2 and "trainer.compile" in result.stderr + result.stdout
    assert "reduce-overhead" in result.stderr + result.stdout
    assert [speed.compile_mode(v) for v in (True, False, "max-autotune")] == ["default", None, "max-autotune"]


def test_compile_without_a_cpp_compiler_is_an_input_error_before_training(small_spec, monkeypatch, tk, spec_file):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    result = tk("train", spec_file(tiny(small_spec, compile=True)))
    assert result.exit_code == 2
    assert "trainer.compile: torch.compile needs a C++ compiler" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_torch_compile_cannot_compile_is_an_input_error(small_spec, monkeypatch, tk, spec_file):
    from torch._dynamo.exc import Unsupported

    class Failing(torch.nn.Module):  # what torch.compile's wrapper does with a model it cannot trace
        def forward(self, *args):
            raise Unsupported("generator with yield from inside forward")

    def fails_at_first_call(module, mode, device):
        return Failing()

    monkeypatch.setattr(speed, "compiled", fails_at_first_call)
    result = tk("train", spec_file(tiny(small_spec, compile="reduce-overhead")))
    assert result.exit_code == 2, result.stderr
    assert "trainer.compile: torch.compile cannot compile this model: Unsupported" in result.stderr
    assert "trainer.compile: false" in result.stderr and "Traceback" not in result.stderr


def test_other_failures_stay_run_failures_with_compile_on(small_spec, monkeypatch, tk, spec_file):
    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise ZeroDivisionError("the model's own bug")

    def broken(module, mode, device):
        return Broken()

    monkeypatch.setattr(speed, "compiled", broken)
    result = tk("train", spec_file(tiny(small_spec, compile=True)))
    assert result.exit_code == 1 and "ZeroDivisionError" in result.stderr


def test_channels_last_puts_conv_weights_and_image_batches_in_nhwc(tmp_path):
    spec = torchtk.load_spec("shapes-dice", overrides=[
        "data.params.n_samples=40", "data.params.size=16", "trainer.epochs=1", "trainer.device=cpu",
        f"trainer.output_dir={tmp_path}", "trainer.progress=false", "trainer.channels_last=true"])
    from torchtk.core.engine import Run
    from torchtk.core.progress import Reporter
    from torchtk.core.registry import get_registry

    run = Run(spec, get_registry(), Reporter(), tmp_path / "run")
    convs = [m for m in run.parts.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    images = run.parts.train.tensors[0]
    assert images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
    result = run.fit()
    saved = torch.load(result.last_checkpoint, weights_only=True)["model"]
    assert sorted(saved) == sorted(result.model.state_dict()) and math.isfinite(result.history[-1]["val_loss"])


def test_channels_last_leaves_other_tensors_alone():
    flat, image = torch.randn(4, 3), torch.randn(2, 3, 4, 4)
    out = speed.channels_last((flat, [image]))
    assert out[0] is flat and out[1][0].is_contiguous(memory_format=torch.channels_last)


def test_tf32_sets_torchs_choice_and_unset_leaves_it(monkeypatch):
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch < 2.9: allow_tf32 flags")
    before = matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        speed.set_tf32(True)
        assert (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("tf32", "tf32")
        speed.set_tf32(None)
        assert matmul.fp32_precision == "tf32"
        speed.set_tf32(False)
        assert (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("ieee", "ieee")
    finally:
        matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before


def test_speed_options_may_change_on_resume():
    from torchtk.core.spec.fingerprint import RESUMABLE_CHANGES

    assert {("trainer", "compile"), ("trainer", "channels_last"), ("trainer", "tf32")} <= RESUMABLE_CHANGES
