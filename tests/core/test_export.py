"""tk export / torchtk.export: each format written, loaded back fresh and checked against the
eager model; here every file is loaded once more, independently, and run on a batch of a size
the export never saw (dynamic batch)."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys

import pytest
import torch
from torch import nn

import torchtk
from torchtk.core.export import TOLERANCES, ExportFailed, ExportMismatch
from tests.conftest import SMALL_RINGS

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.load` is deprecated:FutureWarning")

ONNX = ("onnx", "onnxscript", "onnxruntime")
HAS_ONNX = all(importlib.util.find_spec(module) is not None for module in ONNX)
ONNX_SKIP = "the onnx extra (onnx, onnxscript, onnxruntime) is not installed: pip install 'torchtk[onnx]'"
FORMATS = ["exported", "torchscript", pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason=ONNX_SKIP)),
           "safetensors"]
FILES = {"exported": "model.pt2", "torchscript": "model.torchscript.pt", "onnx": "model.onnx",
         "safetensors": "model.safetensors"}


def train(spec, folder):
    spec = copy.deepcopy(spec)
    spec["trainer"]["output_dir"] = str(folder)
    return torchtk.train(spec, progress=False).run_dir


@pytest.fixture(scope="module")
def rings_run(tmp_path_factory):
    return train(SMALL_RINGS, tmp_path_factory.mktemp("rings"))


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """simple_cnn on 16x16 PNGs of two classes (horizontal and vertical stripes), one epoch."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for label, axis in (("horizontal", 0), ("vertical", 1)):
        (root / label).mkdir()
        for index in range(6):
            stripes = (torch.arange(16) % (2 + index % 3) == 0).to(torch.uint8) * 255
            plane = stripes[:, None].expand(16, 16) if axis == 0 else stripes[None, :].expand(16, 16)
            pixels = torch.stack([plane, plane.flip(0), torch.full_like(plane, 40 * index)], dim=-1)
            Image.fromarray(pixels.contiguous().numpy()).save(root / label / f"{index}.png")
    spec = dict(copy.deepcopy(SMALL_RINGS), name="cnn-small", loss="cross_entropy", callbacks=[], scheduler=[],
                model={"name": "simple_cnn", "params": {"in_channels": 3, "num_classes": 2}},
                data={"name": "image_folder", "params": {"root": str(root)}, "batch_size": 4, "val_split": 0.5})
    spec["trainer"]["epochs"] = 1
    return train(spec, tmp_path_factory.mktemp("cnn"))


def load_fresh(format, path, run_dir):
    """The written file as a callable, loaded the way a user of that format would."""
    if format == "exported":
        return torch.export.load(path).module()
    if format == "torchscript":
        return torch.jit.load(path)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    from safetensors.torch import load_model

    model = torchtk.load_run(run_dir).model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    load_model(model, path)
    return model


def round_trip(run_dir, format, *batches):
    (result,) = torchtk.export(run_dir, format)
    assert result.path == run_dir / "export" / FILES[format] and result.path.stat().st_size == result.size > 0
    assert result.batch_sizes == (4, 6) and result.max_abs_diff <= result.atol
    eager, loaded = torchtk.load_run(run_dir).model(), load_fresh(format, result.path, run_dir)
    for batch in batches:
        with torch.no_grad():
            expected, actual = eager(batch), loaded(batch)
        if format == "safetensors":
            assert (result.atol, result.rtol) == (0.0, 0.0) and torch.equal(actual, expected)
        else:
            assert (result.rtol, result.atol) == TOLERANCES["float32"]
            torch.testing.assert_close(actual, expected, atol=result.atol, rtol=result.rtol)
    return result


@pytest.mark.parametrize("format", FORMATS)
def test_the_rings_mlp_round_trips_at_other_batch_sizes(rings_run, format):
    round_trip(rings_run, format, torch.randn(7, 2), torch.randn(1, 2))


@pytest.mark.parametrize("format", FORMATS)
def test_a_cnn_on_images_round_trips_at_another_batch_size(cnn_run, format):
    result = round_trip(cnn_run, format, torch.rand(5, 3, 16, 16))
    if format == "torchscript":
        assert any("deprecates TorchScript" in note for note in result.notes)


def test_safetensors_holds_the_checkpoint_weights_and_the_runs_metadata(cnn_run):
    from safetensors import safe_open
    from safetensors.torch import load_file

    (result,) = torchtk.export(cnn_run, "safetensors", checkpoint="last")
    checkpoint = torch.load(cnn_run / "checkpoints" / "last.pt", weights_only=True)
    weights = load_file(result.path)
    assert weights.keys() == checkpoint["model"].keys()
    assert all(torch.equal(weights[key], value) for key, value in checkpoint["model"].items())
    with safe_open(result.path, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["run"] == cnn_run.name and metadata["checkpoint"] == "last.pt" and metadata["epoch"] == "1"
    assert json.loads(metadata["classes"]) == ["horizontal", "vertical"]
    assert json.loads(metadata["input_shape"]) == [3, 16, 16] and metadata["input_dtype"] == "float32"


def test_the_exported_program_and_the_trace_carry_the_metadata(rings_run):
    torchtk.export(rings_run, "exported,torchscript")
    found = {"torchtk.json": ""}
    torch.export.load(rings_run / "export" / "model.pt2", extra_files=found)
    assert json.loads(found["torchtk.json"])["run"] == rings_run.name
    found = {"torchtk.json": ""}
    torch.jit.load(rings_run / "export" / "model.torchscript.pt", _extra_files=found)
    assert json.loads(found["torchtk.json"])["epoch"] == json.loads((rings_run / "metrics.json").read_text())[
        "best"]["epoch"]


def test_tk_export_says_what_it_wrote(tk, rings_run, tmp_path):
    result = tk("export", rings_run, "--format", "safetensors", "-f", "exported,safetensors", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"safetensors: wrote {tmp_path / 'out' / 'model.safetensors'} (")
    assert lines[0].endswith("checked on batches of 4 and 6: max |diff| to the model 0 (exact)")
    assert lines[1].startswith(f"exported: wrote {tmp_path / 'out' / 'model.pt2'} (")
    assert "kB); checked on batches of 4 and 6: max |diff| to the model 0 (atol 1e-05, rtol 0.0001)" in lines[1]
    assert len(lines) == 2


def test_json_output_and_an_out_file_for_one_format(tk, rings_run, tmp_path):
    result = tk("export", rings_run, "-f", "torchscript", "--out", tmp_path / "m.pt", "--checkpoint", "last", "--json")
    assert result.exit_code == 0, result.stderr
    (written,) = result.json()
    assert written["path"] == str(tmp_path / "m.pt") and written["size"] == (tmp_path / "m.pt").stat().st_size
    assert written["batch_sizes"] == [4, 6] and written["format"] == "torchscript"


@pytest.mark.skipif(not HAS_ONNX, reason=ONNX_SKIP)
def test_onnx_names_its_input_and_keeps_the_batch_dynamic(rings_run):
    import onnx

    (result,) = torchtk.export(rings_run, "onnx")
    model = onnx.load(result.path)
    (graph_input,) = model.graph.input
    assert graph_input.name == "input" and graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {p.key: p.value for p in model.metadata_props}["run"] == rings_run.name


def test_onnx_without_the_extra_is_an_install_hint(tk, rings_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = tk("export", rings_run, "--format", "onnx")
    message = result.stderr.strip()
    assert result.exit_code == 2 and message.startswith("error: --format onnx needs ") and "onnxruntime" in message
    assert message.endswith("which is not installed: pip install 'torchtk[onnx]'") and "\n" not in message


@pytest.mark.skipif(not HAS_ONNX, reason=ONNX_SKIP)
def test_large_onnx_weights_go_to_an_external_data_file_that_the_check_reads(rings_run, tmp_path, monkeypatch):
    monkeypatch.setattr("torchtk.core.export.ONNX_EXTERNAL_BYTES", 0)
    (result,) = torchtk.export(rings_run, "onnx", out=tmp_path / "big.onnx")
    assert result.files == [tmp_path / "big.onnx", tmp_path / "big.onnx.data"]
    assert result.size == sum(f.stat().st_size for f in result.files) and result.max_abs_diff <= result.atol


def test_safetensors_without_the_package_is_an_install_hint(tk, rings_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    result = tk("export", rings_run, "--format", "exported,safetensors", "--out", tmp_path / "out")
    assert result.exit_code == 2 and result.stdout == "" and not (tmp_path / "out").exists()  # before any export
    assert result.stderr.strip() == ("error: --format safetensors needs safetensors, which is not installed: "
                                     "pip install 'torchtk[safetensors]'")


# -- models that a format cannot take ------------------------------------------------------


class Branching(nn.Module):
    """Data-dependent control flow: the branch depends on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x):
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


class FixedBatch(Branching):
    """A branch on the batch size, which a trace bakes in."""

    def forward(self, x):
        return self.linear(x) if x.shape[0] == 4 else 2 * self.linear(x)


def branching() -> nn.Module:
    return Branching()


def fixed_batch() -> nn.Module:
    return FixedBatch()


def run_of(model, tmp_path):
    return train(dict(copy.deepcopy(SMALL_RINGS), model={"import": f"tests.core.test_export:{model}"}), tmp_path)


def test_data_dependent_control_flow_cannot_be_exported(tk, tmp_path):
    run_dir = run_of("branching", tmp_path)
    result = tk("export", run_dir, "--format", "exported")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: --format exported: torch.export cannot export this model (")
    assert "data-dependent" in result.stderr and "try --format torchscript (a trace) or safetensors" in result.stderr
    assert not (run_dir / "export" / "model.pt2").exists()
    with pytest.raises(ExportFailed):
        torchtk.export(run_dir, "exported")
    if HAS_ONNX:  # the ONNX exporter goes through torch.export
        with pytest.raises(ExportFailed, match="torch.onnx.export cannot .*data-dependent.*try --format exported, "):
            torchtk.export(run_dir, "onnx")


def test_a_trace_that_bakes_the_batch_size_in_fails_its_check_and_is_removed(tk, tmp_path):
    run_dir = run_of("fixed_batch", tmp_path)
    result = tk("export", run_dir, "--format", "safetensors,torchscript")
    assert result.exit_code == 1
    assert result.stdout.startswith("safetensors: wrote")  # the file before the failure stays, and is said
    assert result.stderr.startswith("error: --format torchscript: the written file's outputs differ from the "
                                    "model's (max |diff| 0 on 4 samples, ")
    assert "on 6 samples; allowed: atol 1e-05 + rtol 0.0001 x |output|)" in result.stderr
    assert result.stderr.strip().endswith("model.torchscript.pt was removed")
    assert not (run_dir / "export" / "model.torchscript.pt").exists()
    assert (run_dir / "export" / "model.safetensors").exists()
    with pytest.raises(ExportMismatch):
        torchtk.export(run_dir, "torchscript")
    with pytest.raises(ExportFailed, match="specialized it to be a constant"):
        torchtk.export(run_dir, "exported")
    if HAS_ONNX:  # its exporter falls back to a fixed batch size, which the check at 6 samples finds
        with pytest.raises(ExportMismatch, match="fails on a batch of 6 samples after it ran on 4"):
            torchtk.export(run_dir, "onnx")
    assert sorted(p.name for p in (run_dir / "export").iterdir()) == ["model.safetensors"]


# -- bad input -----------------------------------------------------------------------------


def test_bad_input_is_one_message_and_exit_2(tk, rings_run, tmp_path):
    other = copy.deepcopy(SMALL_RINGS)
    other["model"]["params"]["hidden"] = [8]
    foreign = train(other, tmp_path / "other") / "checkpoints" / "best.pt"
    (tmp_path / "folder").mkdir()
    cases = {
        ("export", tmp_path, "-f", "onnx"): f"error: {tmp_path}: is not a run directory (no spec.json in it)",
        ("export", rings_run, "-f", "onxx"): "error: --format onxx: unknown format; formats: exported, torchscript, "
                                             "onnx, safetensors (or all, or a comma list); did you mean 'onnx'?",
        ("export", rings_run, "-f", "exported", "--checkpoint", foreign):
            f"error: --checkpoint {foreign}: {foreign} was written by a run of another spec",
        ("export", rings_run, "-f", "exported", "--out", tmp_path / "folder"):
            f"error: --out {tmp_path / 'folder'}: is a folder; give the file to write",
        ("export", rings_run, "-f", "exported", "--checkpoint", "nope"):
            "error: --checkpoint nope: no such file; give best, last or a checkpoint file",
        ("export", rings_run, "-f", "exported", "--device", "gpu"): "error: --device gpu: Expected one of cpu, cuda",
        ("export", rings_run, "-f", ","): "error: --format: give at least one of exported, torchscript",
    }
    for args, message in cases.items():
        result = tk(*args)
        assert result.exit_code == 2 and result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
