"""The docs cannot drift: commands shown in the README run, and CONTRIBUTING's
architecture page names every core module that exists (and none that does not)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()

SAFE_COMMANDS = [
    line.split("$ ", 1)[1].split("  #")[0].strip()
    for line in README.splitlines()
    if line.strip().startswith("$ tk ") and not re.search(r"\btk (train|schema|runs|compare|evaluate|predict|export)\b",
                                                          line)
]  # the After-training commands need run directories: test_readme_after_training_output_is_real makes them


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


RUN_NAME = re.compile(r"\b(finetune-stage\d)-\d{8}-\d{6}(-\d+)?")
README_CWD = "/home/you/torchtk"  # the README's stand-in for the folder the commands run in


def _tokens(line: str) -> list[str]:
    """A line of tk output with what differs between two real runs of it (run directory
    names, dates, times, durations, the working directory) replaced by placeholders."""
    line = RUN_NAME.sub(r"\1-RUN", line)
    line = re.sub(r"eval-\d{8}-\d{6}(-\d+)?", "eval-TIME", line)  # -2: a second evaluation in that second
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


class RunNames:
    """The README's run directory names -> this test's, by order of appearance per kind
    (the README's first stage-2 run is the one ``make finetune`` made, the next one the
    run its ``tk train`` line makes)."""

    def __init__(self, runs: Path) -> None:
        self.runs, self.known = runs, {}

    def __call__(self, match: re.Match) -> str:
        shown = match.group(0)
        if shown not in self.known:
            taken = set(self.known.values())
            made = sorted(p.name for p in self.runs.glob(f"{match.group(1)}-*") if p.name not in taken)
            assert made, f"the README names {shown}, but no new {match.group(1)} run exists"
            self.known[shown] = made[0]
        return self.known[shown]


def _make_finetune(tk: Any, root: Path) -> None:
    """What ``make finetune`` does, in ``root``: the example's specs and images, stage 1, stage 2."""
    example = root / "examples" / "finetune"
    example.mkdir(parents=True)
    for name in ("stage1.json", "stage2.json", "make_images.py"):
        shutil.copy(ROOT / "torchtk" / "examples" / "finetune" / name, example / name)
    spec = importlib.util.spec_from_file_location("make_images", example / "make_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(example / "finetune-data")
    stage1 = tk("train", "examples/finetune/stage1.json", "--json")
    assert stage1.exit_code == 0, stage1.stderr
    weights = f"model.params.weights={stage1.json()['run_dir']}/checkpoints/best.pt"
    assert tk("train", "examples/finetune/stage2.json", "--set", weights).exit_code == 0


@pytest.fixture
def two_threads():
    """torch's intra-op threads at 2 for one test, then as before: the README's numbers were
    made with 2 (this machine's cores), and CPU kernels sum in another order with 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_readme_after_training_output_is_real(tk, tmp_path, monkeypatch, two_threads):
    """The "After training" tour, run on a fresh copy of the fine-tuning example: every
    command runs, and each prints what the README shows."""
    section = README.split("### After training", 1)[1].split("\n### ", 1)[0]
    block = [line[4:] for line in section.splitlines() if line.startswith("    ") or not line.strip()]
    commands = [i for i, line in enumerate(block) if line.startswith("$ tk ")]
    assert len(commands) >= 7, "the tour shows evaluate, predict, export, train, runs and compare"
    monkeypatch.chdir(tmp_path)
    _make_finetune(tk, tmp_path)
    names = RunNames(tmp_path / "runs")
    for index, end in zip(commands, commands[1:] + [len(block)]):
        command = RUN_NAME.sub(names, block[index][2:])
        result = tk(*shlex.split(command)[1:])
        assert result.exit_code == 0, (command, result.stderr)
        if command.startswith("tk train"):
            continue
        shown = [line for line in block[index + 1:end] if line.strip()]
        real = (result.stdout + result.stderr).replace(str(tmp_path), README_CWD)
        _same_output(shown, [line for line in real.splitlines() if line.strip()])
    assert (tmp_path / "compare.png").is_file() and (tmp_path / "predictions.csv").is_file()


# -- the callback guide and the hook reference ------------------------------------------------

CALLBACK_GUIDE = CONTRIBUTING.split("## Writing a callback", 1)[1].split("\n## ", 1)[0]


def test_docs_hooks_md_is_generated_from_the_hookspecs():
    from torchtk.core.hook_reference import markdown

    assert (ROOT / "docs" / "hooks.md").read_text() == markdown(), (
        "docs/hooks.md is stale: regenerate it with `tk hooks --markdown > docs/hooks.md`")


def test_the_callback_guide_names_every_run_hook_and_every_train_state_field():
    import dataclasses

    from torchtk import RunInfo, TrainState
    from torchtk.core.plugin_checks import RUN_HOOKS

    table = CALLBACK_GUIDE.split("**The run hooks**", 1)[1].split("**`TrainState`**", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", table, re.M) == list(RUN_HOOKS)
    fields = CALLBACK_GUIDE.split("**`TrainState`**", 1)[1].split("A worked example", 1)[0]
    named = set(re.findall(r"`(\w+)`", " ".join(re.findall(r"^\| ([^|]+) \|", fields, re.M))))
    assert named == {f.name for f in dataclasses.fields(TrainState)}
    run_info = {f.name for f in dataclasses.fields(RunInfo)} | {"total_steps", "validates"}
    assert all(f"`{name}" in fields for name in run_info), run_info


def _guide_plugin():
    """The guide's worked example, as the module a plugin author would write."""
    import types

    [code] = [block for block in re.findall(r"```python\n(.*?)```", CALLBACK_GUIDE, re.S)
              if block.startswith("# torchtk_patience.py")]
    module = types.ModuleType("torchtk_patience")
    exec(compile(code, "CONTRIBUTING.md", "exec"), module.__dict__)
    return module


def test_the_callback_guides_example_trains_stops_and_resumes(small_spec, tmp_path):
    import json

    import torch

    import torchtk
    from torchtk.testing import check_plugin, registry_with

    registry = registry_with(_guide_plugin())
    assert check_plugin(registry, "torchtk_patience") == []
    small_spec["trainer"]["epochs"] = 6
    small_spec["callbacks"] = [{"name": "train_loss_patience", "params": {"patience": 2, "min_delta": 10.0}}]
    result = torchtk.train(small_spec, registry=registry)  # epoch 1 improves on inf; 2 and 3 not by 10
    assert result.stopped_early and [row["epoch"] for row in result.history] == [1, 2, 3]
    log = (result.run_dir / "train.log").read_text()
    assert "train_loss_patience: stopping after 2 epochs without improvement" in log
    assert "train_loss has not improved for 2 epochs: stopping" in log
    extras = json.loads((result.run_dir / "metrics.json").read_text())["train_loss_patience"]
    assert extras == {"best": result.history[0]["train_loss"], "waited": 2}
    saved = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["callbacks"]["callbacks[0]:train_loss_patience"] == extras

    small_spec["trainer"]["epochs"] = 2
    small_spec["callbacks"][0]["params"]["patience"] = 3
    first = torchtk.train(small_spec, registry=registry)
    assert not first.stopped_early
    resumed = torchtk.train(small_spec, registry=registry, resume=first.run_dir, overrides=["trainer.epochs=6"])
    # the resumed callback kept counting from its checkpointed state: it waited 1, then 2 more epochs
    assert resumed.stopped_early and [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
