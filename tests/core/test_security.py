"""What torchtk loads and runs (SECURITY.md): the tests its claims name, and a test that
every test SECURITY.md names exists, so the document cannot drift."""

from __future__ import annotations

import ast
import json
import re
import secrets
import sys
import textwrap
from pathlib import Path

import pytest

import torchtk

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "SECURITY.md"


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """``write(name, body)``: a module on sys.path that creates ``<tmp>/<name>.imported``
    when it is imported; returns the marker's path."""
    created = []

    def write(name: str, body: str = "", package: str | None = None) -> Path:
        marker = tmp_path / f"{package or name}.imported"
        folder = tmp_path / package if package else tmp_path
        folder.mkdir(exist_ok=True)
        target = folder / ("__init__.py" if package else f"{name}.py")
        head = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        target.write_text(head + textwrap.dedent(body))
        if package:
            (folder / f"{name}.py").write_text(textwrap.dedent(body))
        created.append(package or name)
        return marker

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in created:
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[loaded]


FACTORY = """
import torch

def build(width=4):
    return torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))

def not_a_model():
    return 42
"""


# -- code a spec names ------------------------------------------------------------------------


def test_tk_validate_imports_nothing_a_spec_names_and_says_what_tk_train_would(tk, small_spec, spec_file,
                                                                               marker_module):
    marker = marker_module("spec_marker_models", FACTORY)
    small_spec["model"] = {"import": "spec_marker_models:build", "params": {"width": 3}}
    path = spec_file(small_spec)
    result = tk("validate", path)
    assert result.exit_code == 0, result.stderr
    assert not marker.exists() and "spec_marker_models" not in sys.modules
    assert ("model.import: tk train will import spec_marker_models and call spec_marker_models:build"
            in result.stderr)
    as_json = tk("validate", path, "--json").json()
    assert as_json["valid"] is True and as_json["spec"]["model"]["import"] == "spec_marker_models:build"
    assert as_json["imports"] == [{"path": "model.import", "module": "spec_marker_models",
                                   "object": "spec_marker_models:build"}]
    assert not marker.exists()
    small_spec["trainer"]["epochs"] = 1
    assert tk("train", spec_file(small_spec)).exit_code == 0 and marker.exists()  # tk train runs it, by design


def test_tk_validate_does_not_run_the_package_of_a_dotted_import(tk, small_spec, spec_file, marker_module):
    marker = marker_module("models", FACTORY, package="spec_marker_pkg")
    small_spec["model"] = {"import": "spec_marker_pkg.models:build"}
    result = tk("validate", spec_file(small_spec))
    assert result.exit_code == 0, result.stderr
    assert not marker.exists() and "tk train will import spec_marker_pkg.models" in result.stderr
    small_spec["model"] = {"import": "spec_marker_pkg.missing:build"}
    missing = tk("validate", spec_file(small_spec))
    assert missing.exit_code == 2 and "no module named 'spec_marker_pkg.missing'" in missing.stderr
    assert not marker.exists()


def test_os_system_in_a_spec_is_not_run_by_tk_validate(tk, small_spec, spec_file, tmp_path):
    marker = tmp_path / "command-ran"
    small_spec["model"] = {"import": "os:system", "params": {"command": f"touch {marker}"}}
    path = spec_file(small_spec)
    result = tk("validate", path)
    assert result.exit_code == 0 and not marker.exists()
    assert "model.import: tk train will import os and call os:system" in result.stderr
    trained = tk("train", path)  # tk train calls it (a spec runs the code it names), then refuses the result
    assert marker.exists() and trained.exit_code == 2
    assert "error: model: 'os:system' returned int 0, not a torch.nn.Module" in trained.stderr


def test_a_model_factory_that_returns_no_module_is_exit_2_naming_model(tk, small_spec, spec_file, marker_module):
    marker_module("spec_marker_bad", FACTORY)
    small_spec["model"] = {"import": "spec_marker_bad:not_a_model"}
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == ("error: model: 'spec_marker_bad:not_a_model' returned int 42, not a "
                                     "torch.nn.Module; a model factory must return the network")


@pytest.mark.parametrize(("reference", "expected"), [
    ("sys:exit", "error: model: building model 'sys:exit' failed: it called sys.exit(None)"),
    ("os:path", "error: model.import: 'os:path' is module, not callable"),
    ("json:nothing_here", "error: model.import: cannot import 'json:nothing_here': AttributeError"),
])
def test_a_factory_that_cannot_build_is_exit_2(tk, small_spec, spec_file, reference, expected):
    small_spec["model"] = {"import": reference}
    result = tk("train", spec_file(small_spec))
    assert result.exit_code == 2 and result.stderr.startswith(expected), result.stderr


def test_a_yaml_spec_cannot_construct_python_objects(tk, spec_file, tmp_path):
    marker = tmp_path / "yaml-ran"
    path = spec_file(text=f'name: !!python/object/apply:os.system ["touch {marker}"]\n', name="spec.yaml")
    result = tk("validate", path)
    assert result.exit_code == 2 and "malformed YAML" in result.stderr and not marker.exists()


# -- plugins come from installed distributions -------------------------------------------------


def test_plugins_come_only_from_installed_distributions_and_can_be_switched_off(tk, installed_plugins, tmp_path,
                                                                                monkeypatch):
    marker = tmp_path / "plugin-imported"
    source = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    (tmp_path / "torchtk_fake_loose.py").write_text(source)  # a module on sys.path, but no distribution names it
    installed_plugins("torchtk-fake-marker", {"fake_marker": "torchtk_fake_marker"}, {"torchtk_fake_marker": source})
    monkeypatch.setenv("TORCHTK_DISABLE_PLUGINS", "all")
    result = tk("plugins", "--json")
    assert result.exit_code == 0 and not marker.exists()
    assert all(row["builtin"] for row in result.json()["plugins"]) and tk("list").exit_code == 0
    assert not marker.exists()
    monkeypatch.delenv("TORCHTK_DISABLE_PLUGINS")
    torchtk.core.registry.set_registry(None)
    names = [row["name"] for row in tk("plugins", "--json").json()["plugins"]]
    assert marker.exists() and "fake_marker" in names and "torchtk_fake_loose" not in " ".join(names)


# -- what a run directory holds ---------------------------------------------------------------

RUN_FILES = {"spec.json", "train.log", "history.csv", "metrics.json", "curves.png", "checkpoints/last.pt",
             "checkpoints/best.pt"}


def test_a_run_directory_holds_the_spec_and_logs_and_no_secret_from_the_environment(tk, small_spec, spec_file,
                                                                                    monkeypatch):
    secret = f"s3cr3t-{secrets.token_hex(16)}"
    for variable in ("TORCHTK_TEST_SECRET", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "WANDB_API_KEY"):
        monkeypatch.setenv(variable, secret)
    small_spec["trainer"]["epochs"] = 2
    result = tk("train", spec_file(small_spec), "--json")
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.json()["run_dir"])
    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    assert files == RUN_FILES
    for name in files:
        data = (run_dir / name).read_bytes()
        assert secret.encode() not in data and b"AWS_SECRET_ACCESS_KEY" not in data, name
    assert json.loads((run_dir / "spec.json").read_text())["name"] == small_spec["name"]


# -- torch.load everywhere: weights_only=True, never retried without --------------------------


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_torch_load_passes_weights_only_true_and_nothing_unpickles():
    loads, unsafe = [], []
    for path in sorted((ROOT / "torchtk").rglob("*.py")):
        for call, name in _calls(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            flags = {k.arg: k.value for k in call.keywords}
            if "weights_only" in flags or name in ("torch.load", "torch.serialization.load"):
                flag = flags.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, where  # never False, never a variable
                loads.append(where)
            if name in ("eval", "exec", "pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load",
                        "marshal.loads", "torch.jit.load", "np.load", "numpy.load", "dill.load"):
                unsafe.append((str(path.relative_to(ROOT)), name))
    assert len(loads) >= 4  # the resume reader, the weights reader, early stopping's restore_best, load_run
    # tk export --format torchscript loads back the file it has just written, to check it (SECURITY.md)
    assert unsafe == [("torchtk/core/export.py", "torch.jit.load")]


# -- SECURITY.md cannot drift -----------------------------------------------------------------

REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def security_references() -> list[tuple[str, str | None]]:
    return sorted(set(REFERENCE.findall(SECURITY.read_text())))


def test_security_md_names_tests_for_its_claims():
    references = security_references()
    assert len(references) >= 10
    assert ("tests/core/test_lr_expression_security.py", "") in references or any(
        module == "tests/core/test_lr_expression_security.py" for module, _ in references)


@pytest.mark.parametrize(("module", "test"), security_references())
def test_every_test_security_md_names_exists(module, test):
    path = ROOT / module
    assert path.is_file(), f"SECURITY.md names {module}, which does not exist"
    if test:
        assert re.search(rf"^(async )?def {test}\(", path.read_text(), re.M), f"{module} has no {test}"
