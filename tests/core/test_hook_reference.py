"""``tk hooks`` and docs/hooks.md: the hook reference, generated from hookspecs.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from torchtk.core import hook_reference
from torchtk.core.plugins import PluginHost

ROOT = Path(__file__).resolve().parents[2]


def test_every_hook_is_in_the_reference_in_the_hookspecs_order():
    docs = hook_reference.hook_docs()
    assert sorted(h.name for h in docs) == sorted(PluginHost.hook_names())
    assert [h.convention for h in docs[:2]] == ["catalog", "provider"] and docs[-1].name == "on_fit_end"
    step = hook_reference.hook_doc("on_save_checkpoint")
    assert step.signature == "on_save_checkpoint(state: TrainState, checkpoint: dict[str, Any]) -> None"


def test_rst_is_rendered_as_markdown():
    text = hook_reference.rst_to_markdown(
        "Uses ``x`` and :class:`~torchtk.TrainState`.\n\n:param state: The live\n    state.\n"
        ":returns: Nothing.\n\nIn order::\n\n    a\n    b\n\n.. versionadded:: 0.2")
    assert text == ("Uses `x` and `torchtk.TrainState`.\n\n- `state`: The live state.\n- Returns: Nothing.\n\n"
                    "In order:\n\n```\na\nb\n```\n\n*Added in 0.2.*")


def test_tk_hooks_lists_shows_one_and_prints_the_markdown(tk):
    listed = tk("hooks", "--json")
    assert listed.exit_code == 0
    rows = {row["hook"]: row for row in listed.json()}
    assert rows["on_step"]["call"] == "run" and rows["make_loss"]["call"] == "provider"
    assert rows["on_step"]["summary"] == ("Called at every optimisation step, after `backward()` and before "
                                          "`optimizer.step()`.")
    table = tk("hooks").stdout
    assert all(name in table for name in rows)
    one = tk("hooks", "on_step").stdout
    assert "class MyCallback:\n    @hookimpl\n    def on_step(self, state: TrainState) -> None: ..." in one
    assert "state.skip_step = True" in one
    assert tk("hooks", "--markdown").stdout == hook_reference.markdown()


def test_an_unknown_hook_is_an_input_error_with_the_closest_name(tk):
    result = tk("hooks", "on_stepp")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown hook 'on_stepp'. Did you mean 'on_step'? "
                                    "Hooks: register_components")


def test_tk_hooks_imports_no_torch():
    code = ("import sys\nfrom torchtk.core.cli import app\n"
            "try:\n    app(['hooks', '--markdown'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
