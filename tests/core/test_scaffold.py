"""``tk new-plugin``: the package it writes installs, passes its own tests and is listed; bad names exit 2."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest


def kit_plugin() -> list[str]:
    """Where torchtk runs from a source tree that was never installed (PYTHONPATH only), its
    pytest11 entry point is missing: load the kit's plugin by name instead
    (tests/plugins/test_testing_kit.py checks the entry point itself)."""
    from importlib import metadata

    installed = any(ep.value == "torchtk.testing.pytest_plugin" for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "torchtk.testing.pytest_plugin"]


def child_env(site) -> dict:
    return {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def test_new_plugin_installs_passes_its_tests_and_lists_its_loss(tk, tmp_path):
    made = tk("new-plugin", "demo", "--dir", tmp_path)
    assert made.exit_code == 0, made.stderr
    package = tmp_path / "demo"
    assert made.stdout.splitlines()[0] == f"Wrote torchtk-demo (module torchtk_demo, entry point 'demo') in {package}:"
    assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "src/torchtk_demo/__init__.py", "src/torchtk_demo/callbacks.py",
        "tests/test_plugin.py"]

    # a plain (non-editable) install into a folder of its own, offline, then its tests against that copy
    site = tmp_path / "site"
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", *isolation,
                    "--target", str(site), str(package)], check=True, capture_output=True, timeout=180)
    assert (site / "torchtk_demo" / "__init__.py").exists()
    pytest_args = ["-q", "-p", "no:cacheprovider", *kit_plugin(), str(package)]
    tests = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], capture_output=True, text=True,
                           env=child_env(site), cwd=tmp_path, timeout=300)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "4 passed" in tests.stdout

    listed = subprocess.run([sys.executable, "-m", "torchtk", "list", "losses"], capture_output=True, text=True,
                            env=child_env(site), cwd=tmp_path, timeout=120)
    assert listed.returncode == 0 and "demo_smooth_bce" in listed.stdout, listed.stderr
    plugins = subprocess.run([sys.executable, "-m", "torchtk", "plugins", "--json"], capture_output=True, text=True,
                             env=child_env(site), cwd=tmp_path, timeout=120)
    assert '"distribution": "torchtk-demo"' in plugins.stdout


@pytest.mark.parametrize("name", ["Demo", "my plugin", "1st", "my--plugin", "demo_", "torchtk-", "a/b", "../x"])
def test_a_bad_name_exits_2_saying_what_is_valid(tk, tmp_path, name):
    result = tk("new-plugin", name, "--dir", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: new-plugin: {name!r}") and "(for example 'demo'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_non_empty_folder_is_never_written_into(tk, tmp_path):
    mine = tmp_path / "demo" / "pyproject.toml"
    mine.parent.mkdir()
    mine.write_text("my own file\n")
    result = tk("new-plugin", "demo", "--dir", tmp_path)
    assert result.exit_code == 2
    assert result.stderr == (f"error: new-plugin: the folder {tmp_path / 'demo'} exists and is not empty; nothing "
                             "was written. Choose another NAME, or --dir for another parent folder\n")
    assert mine.read_text() == "my own file\n" and list(mine.parent.iterdir()) == [mine]


def test_an_empty_folder_is_filled_and_the_torchtk_prefix_is_not_doubled(tk, tmp_path):
    (tmp_path / "torchtk-my-losses").mkdir()
    result = tk("new-plugin", "torchtk-my-losses", "--dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "Wrote torchtk-my-losses (module torchtk_my_losses, entry point 'my_losses')" in result.stdout
    source = (tmp_path / "torchtk-my-losses" / "src" / "torchtk_my_losses" / "__init__.py").read_text()
    assert '"my_losses_smooth_bce"' in source and '"my_losses_step_counter"' in source


def test_a_dir_that_is_a_file_is_an_input_error(tk, tmp_path):
    (tmp_path / "file").write_text("")
    result = tk("new-plugin", "demo", "--dir", tmp_path / "file")
    assert result.exit_code == 2 and result.stderr == f"error: new-plugin: --dir {tmp_path / 'file'} is not a folder\n"
