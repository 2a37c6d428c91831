"""The docs cannot drift: commands shown in the README run, and CONTRIBUTING's
architecture page names every core module that exists (and none that does not)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()

SAFE_COMMANDS = [
    line.split("$ ", 1)[1].split("  #")[0].strip()
    for line in README.splitlines()
    if line.strip().startswith("$ tk ") and not re.search(r"\btk (train|schema)\b", line)
]


def test_readme_shows_both_setup_commands_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("command", SAFE_COMMANDS)
def test_readme_command_runs(tk, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # commands that write files (tk plan's lr.png) write them here
    args = shlex.split(command)[1:]
    assert tk(*args).exit_code == 0, command


def test_contributing_names_every_core_module():
    core = {p.name for p in (ROOT / "torchtk" / "core").glob("*.py") if p.name != "__init__.py"}
    tree = CONTRIBUTING.split("```")[1]
    named = set(re.findall(r"\b(\w+\.py)\b", tree))
    missing = {m for m in core if m not in named and m not in ("errors.py", "state.py")}
    assert not missing, f"CONTRIBUTING.md does not describe {sorted(missing)}"
    assert {"errors.py", "state.py"} <= named | set(re.findall(r"(\w+\.py)", tree))
    stale = {m for m in named if m.endswith(".py") and not list(ROOT.glob(f"torchtk/**/{m}"))}
    assert not stale, f"CONTRIBUTING.md names modules that do not exist: {sorted(stale)}"


def test_contributing_names_the_real_hooks():
    from torchtk.core.plugins import PluginHost

    for hook in PluginHost.hook_names():
        assert hook in CONTRIBUTING, hook
