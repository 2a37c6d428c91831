"""Precisions: autocast (bf16, fp16 with its GradScaler params), pure low precision
(bf16_true, fp16_true), fp64; how the run converts the model and casts the data, and
what it says about the precision it uses."""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import types

import pytest
import torch

import torchtk
from torchtk import Component, NoParams, hookimpl
from torchtk.core import assembly
from torchtk.core.data import TensorBatches
from torchtk.core.distributed import SingleProcess
from torchtk.core.errors import UserInputError
from torchtk.core.progress import PlainReporter, RichReporter
from torchtk.core.spec import load_resolved
from torchtk.plugins import precision as precision_plugin
from torchtk.testing import check_plugin, registry_with

CPU = torch.device("cpu")
NAMES = ["bf16", "bf16_true", "fp16", "fp16_true", "fp32", "fp64"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def checkpoint(run_dir, name="last.pt"):
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)


def build(spec, upto="probe"):
    return assembly.build_parts(load_resolved(spec), SingleProcess(CPU), upto=upto)


# -- the catalog ---------------------------------------------------------------------------


def test_every_precision_is_listed_and_conforms(tk):
    assert sorted(torchtk.registry.names("precision")) == NAMES
    assert check_plugin(torchtk.registry, "torchtk.plugins.precision") == []
    listed = tk("list", "precision")
    assert listed.exit_code == 0
    for name in NAMES:
        assert name in listed.stdout


@pytest.mark.parametrize("alias, name", [
    ("bf16-true", "bf16_true"), ("16-true", "fp16_true"), ("64", "fp64"), ("64-true", "fp64"),
    ("float64", "fp64"), ("double", "fp64"), ("16-mixed", "fp16"), ("bf16-mixed", "bf16"), ("32-true", "fp32"),
])
def test_lightning_names_are_aliases(alias, name):
    assert torchtk.registry.resolve("precision", alias).name == name


def test_show_fp16_lists_the_grad_scaler_params_with_descriptions(tk):
    result = tk("show", "precision", "fp16")
    assert result.exit_code == 0, result.stderr
    for param in ("init_scale", "growth_factor", "backoff_factor", "growth_interval"):
        assert param in result.stdout
    assert "65536" in result.stdout and "2000" in result.stdout


def test_grad_scaler_param_defaults_are_torch_s_own():
    signature = inspect.signature(torch.amp.GradScaler.__init__).parameters
    fields = precision_plugin.GradScalerParams.model_fields
    for name, field in fields.items():
        assert field.default == signature[name].default, name
        assert field.description


@pytest.mark.parametrize("params, where", [({"growth_factor": 1.0}, "growth_factor"),
                                           ({"backoff_factor": 1.5}, "backoff_factor"),
                                           ({"growth_interval": 0}, "growth_interval"),
                                           ({"init_scale": -1.0}, "init_scale")])
def test_bad_grad_scaler_params_name_the_spec_path(small_spec, tk, spec_file, params, where):
    small_spec["precision"] = {"name": "fp16", "params": params}
    result = tk("validate", spec_file(small_spec))
    assert result.exit_code == 2
    assert f"precision.params.{where}" in result.stderr and "Traceback" not in result.stderr


# -- the GradScaler ------------------------------------------------------------------------


def test_grad_scaler_params_reach_the_scaler_and_its_growth_interval_holds():
    precision = torchtk.registry.create("precision", "fp16", device=CPU, init_scale=1024.0, growth_factor=4.0,
                                        backoff_factor=0.25, growth_interval=3)
    scaler = precision.scaler
    assert scaler.get_scale() == 1024.0
    assert (scaler.get_growth_factor(), scaler.get_backoff_factor(), scaler.get_growth_interval()) == (4.0, 0.25, 3)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    scales = []
    for _ in range(6):
        scaler.scale((weight * 2).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        scales.append(scaler.get_scale())
    assert scales == [1024.0, 1024.0, 4096.0, 4096.0, 4096.0, 16384.0]  # grows after every 3 finite updates
    scaler.scale((weight * float("inf")).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 16384.0 * 0.25


def test_a_run_uses_the_scaler_params_and_checkpoints_them(small_spec):
    small_spec["precision"] = {"name": "fp16", "params": {"init_scale": 256.0, "growth_interval": 1000}}
    small_spec["trainer"]["epochs"] = 1
    saved = checkpoint(torchtk.train(small_spec).run_dir)["scaler"]
    assert saved["scale"] == 256.0 and saved["growth_interval"] == 1000  # 12 updates: no growth yet


# -- what the engine does with a precision ---------------------------------------------------


@pytest.mark.parametrize("name, dtype", [("bf16_true", torch.bfloat16), ("fp16_true", torch.float16),
                                         ("fp64", torch.float64)])
def test_pure_precisions_convert_the_model_before_the_optimizer_and_cast_float_data(small_spec, name, dtype):
    small_spec["precision"] = name
    parts = build(small_spec)
    assert parts.precision.autocast is contextlib.nullcontext  # no autocast
    assert parts.precision.scaler is None and parts.precision_name == name
    assert {p.dtype for p in parts.model.parameters()} == {dtype}
    assert {p.dtype for group in parts.optimizer.param_groups for p in group["params"]} == {dtype}
    assert all(p is q for p, q in zip(parts.optimizer.param_groups[0]["params"], parts.model.parameters()))
    for batches in (parts.train, parts.val):
        assert isinstance(batches, TensorBatches)
        assert [t.dtype for t in batches.tensors] == [dtype, dtype]  # inputs and float targets


def test_fp32_and_autocast_precisions_leave_model_and_data_as_built(small_spec):
    reference = build(small_spec)
    assert reference.precision.param_dtype is None and reference.precision.input_dtype is None
    for name in ("bf16", "fp16"):
        small_spec["precision"] = name
        parts = build(small_spec)
        assert {p.dtype for p in parts.model.parameters()} == {torch.float32}
        assert [t.dtype for t in parts.train.tensors] == [torch.float32, torch.float32]
        assert parts.precision.param_dtype is None and parts.precision.input_dtype is None


def test_integer_targets_keep_their_dtype():
    from torchtk.core.data import to_device

    inputs, labels = to_device([torch.zeros(2, 3), torch.tensor([0, 2])], CPU, torch.bfloat16)
    assert (inputs.dtype, labels.dtype) == (torch.bfloat16, torch.int64)


def test_loss_modules_follow_the_model_dtype():
    weighted = assembly._on_device(torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0])), CPU, torch.float64)
    assert weighted.weight.dtype == torch.float64
    output = torch.randn(3, 2, dtype=torch.float64)
    assert weighted(output, torch.tensor([0, 1, 1])).dtype == torch.float64


def loader_plugin(seen):
    """A map-style dataset (so the run batches it with a DataLoader, cast per batch) and
    a model that records the dtype of every input it gets in ``seen``."""
    module = types.ModuleType("loader_plugin")

    class Listed(torch.utils.data.Dataset):
        def __init__(self):
            self.inner = torchtk.registry.create("dataset", "rings", n_positive=100, n_negative=300)

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, index):
            return self.inner[index]

    @hookimpl
    def register_components(register):
        register(Component("dataset", "listed_rings", "Rings as a map-style dataset.", params=NoParams))
        register(Component("model", "recording_mlp", "An MLP recording its inputs' dtypes.", params=NoParams))

    @hookimpl
    def make_dataset(name, params):
        return Listed()

    @hookimpl
    def make_model(name, params):
        model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        model.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
        return model

    module.register_components, module.make_dataset, module.make_model = register_components, make_dataset, make_model
    return module


def test_loaded_batches_are_cast_on_the_way_to_the_model(small_spec):
    seen = []
    small_spec.update(data={"name": "listed_rings", "batch_size": 50, "val_split": 0.25}, precision="bf16_true",
                      model="recording_mlp", loss="bce_with_logits", callbacks=[])
    small_spec["trainer"]["epochs"] = 2
    registry = registry_with(loader_plugin(seen))
    parts = assembly.build_parts(load_resolved(small_spec, registry=registry), SingleProcess(CPU))
    assert not isinstance(parts.train, TensorBatches) and seen == [torch.bfloat16]  # the probe, on cast inputs
    seen.clear()
    result = torchtk.train(small_spec, registry=registry)
    assert seen == [torch.bfloat16] * (1 + 2 * (6 + 2))  # the probe, then 6 train and 2 val batches per epoch
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]


# -- runs -------------------------------------------------------------------------------------


def test_bf16_true_trains_the_rings_example(tmp_path):
    result = torchtk.train("rings", overrides=["precision=bf16-true", "trainer.epochs=2", "trainer.device=cpu",
                                               f"trainer.output_dir={tmp_path}"])
    assert len(result.history) == 2 and (result.run_dir / "metrics.json").is_file()
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert result.last["val_accuracy"] > 0.85
    for name in ("last.pt", "best.pt"):
        saved = checkpoint(result.run_dir, name)
        assert {t.dtype for t in saved["model"].values()} == {torch.bfloat16}, name
        assert {t.dtype for s in saved["optimizer"]["state"].values() for k, t in s.items() if k != "step"} == \
            {torch.bfloat16}


def test_fp16_true_trains_on_the_cpu(small_spec):
    # Adam's default eps (1e-8) is 0 in float16, so a zero gradient divides 0 by 0: a pure
    # float16 run needs an eps float16 can hold (README: Decisions)
    small_spec["optimizer"]["params"]["eps"] = 1e-4
    small_spec["precision"] = "fp16_true"
    result = torchtk.train(small_spec)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert {t.dtype for t in checkpoint(result.run_dir)["model"].values()} == {torch.float16}


def test_a_precision_the_device_cannot_run_fails_before_training(small_spec, monkeypatch, tmp_path):
    with pytest.raises(torchtk.TorchtkError, match="float8_e4m3fn arithmetic, which this torch does not support"):
        precision_plugin.check_supported("fp16_true", torch.float8_e4m3fn, CPU)
    monkeypatch.setitem(precision_plugin._MODES, "fp16_true", ("float8_e4m3fn", True))  # a dtype the CPU lacks
    small_spec["precision"] = "fp16_true"
    with pytest.raises(UserInputError, match=r"^precision: building precision 'fp16_true' failed: fp16_true needs"):
        torchtk.train(small_spec)
    assert not (tmp_path / "runs").exists()


def test_fp64_weights_are_float64_and_the_run_follows_fp32(small_spec):
    fp32 = torchtk.train(small_spec)
    small_spec["precision"] = "64"
    fp64 = torchtk.train(small_spec)
    assert {t.dtype for t in checkpoint(fp64.run_dir)["model"].values()} == {torch.float64}
    assert [row.keys() for row in fp64.history] == [row.keys() for row in fp32.history]
    for row32, row64 in zip(fp32.history, fp64.history):
        for key, value in row32.items():
            assert row64[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


def test_bf16_true_resumes_bit_for_bit(small_spec):
    small_spec["model"]["params"]["dropout"] = 0.1
    small_spec["precision"] = "bf16_true"
    straight = torchtk.train(small_spec, overrides=["trainer.epochs=4"])
    partial = torchtk.train(small_spec, overrides=["trainer.epochs=2"])
    resumed = torchtk.train(small_spec, overrides=["trainer.epochs=4"], resume=partial.run_dir)
    assert resumed.history == straight.history
    final, expected = checkpoint(resumed.run_dir)["model"], checkpoint(straight.run_dir)["model"]
    for key, tensor in expected.items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, final[key]), key


# -- what the run says ----------------------------------------------------------------------


def test_both_reporters_and_train_log_name_device_and_precision(small_spec):
    small_spec["trainer"]["epochs"] = 1
    small_spec["precision"] = "bf16-true"
    plain = io.StringIO()
    result = torchtk.train(small_spec, reporter=PlainReporter(plain))
    assert re.fullmatch(r"run directory: \S+  \(cpu, bf16_true\)", plain.getvalue().splitlines()[0])
    start = (result.run_dir / "train.log").read_text().splitlines()[0]
    assert re.search(r"start: epochs 1\.\.1, device cpu, precision bf16_true, 12 batches per epoch, "
                     r"pid \d+ on host \S+$", start), start

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    small_spec["precision"] = "fp32"
    torchtk.train(small_spec, reporter=RichReporter(console))
    assert re.fullmatch(r"run directory: \S+  \(cpu, fp32\)", console.file.getvalue().splitlines()[0])


def test_the_cli_s_first_line_names_them_too(small_spec, tk, spec_file):
    small_spec["trainer"]["epochs"] = 1
    result = tk("train", spec_file(small_spec), "--set", "precision=fp64")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("  (cpu, fp64)")


def test_summary_shows_the_model_in_its_precision(small_spec, tk, spec_file):
    small_spec["precision"] = "bf16_true"
    result = tk("summary", spec_file(small_spec), "--json")
    assert result.exit_code == 0, result.stderr
    totals = result.json()["totals"]
    assert totals["params_mb"] * 1e6 == pytest.approx(2 * totals["params"])  # two bytes a bfloat16 parameter
