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
    if line.strip().startswith("$ tk ") and not re.search(r"\btk (train|schema|runs|compare)\b", line)
]  # tk runs and tk compare need run directories: test_readme_after_training_output_is_real makes them


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


def _tokens(line: str) -> list[str]:
    """A line of tk output with what differs between two real runs of it (run directory
    names, dates, times, durations) replaced by placeholders."""
    line = re.sub(r"rings-\d{8}-\d{6}(-\d+)?", "RUN", line)
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "TIME", line)
    line = re.sub(r"\b\d+:\d\d:\d\d\b", "DURATION", line)
    return re.findall(r"[^\s()]+", line)


def _same_output(shown: list[str], real: list[str]) -> None:
    """``real`` (tk's output) says what the README shows: the same words, numbers within
    0.002 (another CPU may round the last digit differently)."""
    assert len(shown) == len(real), (shown, real)
    for shown_line, real_line in zip(shown, real):
        expected, got = _tokens(shown_line), _tokens(real_line)
        assert len(expected) == len(got), (shown_line, real_line)
        for a, b in zip(expected, got):
            if re.fullmatch(r"-?\d+(\.\d+)?", a):
                assert abs(float(a) - float(b)) <= 0.002, (shown_line, real_line)
            else:
                assert a == b, (shown_line, real_line)


def test_readme_after_training_output_is_real(tk, tmp_path, monkeypatch):
    """The "After training" tour: its two tk train commands run, then tk runs and tk
    compare print what the README shows (on these runs' own directory names)."""
    section = README.split("### After training", 1)[1].split("\n### ", 1)[0]
    block = [line[4:] for line in section.splitlines() if line.startswith("    ")]
    commands = [i for i, line in enumerate(block) if line.startswith("$ tk ")]
    monkeypatch.chdir(tmp_path)
    run_dirs: list[str] = []
    for index, end in zip(commands, commands[1:] + [len(block)]):
        args = shlex.split(block[index][2:])[1:]
        if args[0] == "train":
            assert tk(*args).exit_code == 0, block[index]
            continue
        if args[0] == "compare":
            run_dirs = [str(p) for p in sorted(Path("runs/lr").iterdir())]
            args = ["compare", *run_dirs]
        result = tk(*args)
        assert result.exit_code == 0, (block[index], result.stderr)
        shown = [line for line in block[index + 1:end] if line.strip()]
        _same_output(shown, [line for line in result.stdout.splitlines() if line.strip()])
    assert len(run_dirs) == 2 and (tmp_path / "compare.png").is_file()
