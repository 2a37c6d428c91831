"""Shared fixtures: a small rings spec, a tk runner, and a hermetic registry."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from dataclasses import dataclass

import pytest

from torchtk.core import cli
from torchtk.core.registry import set_registry

SMALL_RINGS = {
    "name": "rings-small",
    "seed": 0,
    "model": {"name": "mlp", "params": {"in_features": 2, "hidden": [16], "out_features": 1}},
    "data": {"name": "rings", "params": {"n_positive": 200, "n_negative": 600}, "batch_size": 50, "val_split": 0.25},
    "loss": [{"name": "focal", "params": {"alpha": 0.75, "gamma": 2.0}},
             {"name": "l2_regularization", "params": {"alpha": 0.0001}}],
    "optimizer": {"name": "adam", "params": {"lr": 0.01}},
    "scheduler": {"name": "step", "params": {"step_size": 2, "gamma": 0.5}},
    "callbacks": [{"name": "grad_clip", "params": {"max_norm": 20}}],
    "metrics": ["accuracy"],
    "trainer": {"epochs": 3, "device": "cpu"},
}


@pytest.fixture
def small_spec(tmp_path):
    """A fast spec (a second or so) writing its runs under tmp_path."""
    spec = copy.deepcopy(SMALL_RINGS)
    spec["trainer"]["output_dir"] = str(tmp_path / "runs")
    return spec


@pytest.fixture
def spec_file(tmp_path, small_spec):
    """Write a spec dict to a file and return its path."""

    def write(data=None, name="spec.json", text=None):
        path = tmp_path / name
        path.write_text(text if text is not None else json.dumps(data if data is not None else small_spec))
        return path

    return write


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Every test starts with a freshly loaded registry and no plugin env switches."""
    for var in ("TORCHTK_DISABLE_PLUGINS", "TORCHTK_LOAD_PLUGINS", "TORCHTK_STRICT_PLUGINS", "TORCHTK_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    set_registry(None)
    yield
    set_registry(None)


@dataclass
class TkResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def tk(capsys):
    """Run the ``tk`` CLI in-process: ``tk("list", "losses")`` -> TkResult."""

    def run(*args: str) -> TkResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return TkResult(exited.value.code, out.out, out.err)

    return run


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Install fake distributions with ``torchtk`` entry points on sys.path."""

    def install(dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None):
        # the folder's name is the normalised one (underscores): Python 3.11's importlib.metadata
        # splits "torchtk-faults-1.2.3" at its first "-" and would take it for a "torchtk" dist
        info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[torchtk]\n{lines}\n")
        for name, source in (modules or {}).items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))

    yield install
    for name in [m for m in sys.modules if m.startswith("torchtk_fake")]:
        del sys.modules[name]
