"""The hook reference, generated from ``hookspecs.py``: ``tk hooks`` and ``docs/hooks.md``.

One source, so the reference cannot drift from the hooks torchtk calls: the docs test
compares ``docs/hooks.md`` with :func:`markdown`. Reads the hookspecs' signatures and
docstrings only (pluggy, no torch).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from torchtk.core import hookspecs

CONVENTIONS = {
    "catalog": "catalog call: once per plugin, separately, when the registry is first used",
    "provider": "provider call: on the one plugin that declared the component's name",
    "run": "run call: on the callbacks the spec lists, in the spec's order",
}
HEADER = ("<!-- Generated from torchtk/core/hookspecs.py by `tk hooks --markdown > docs/hooks.md`; "
          "tests/test_docs.py checks it. Do not edit by hand. -->")


@dataclass(frozen=True)
class HookDoc:
    """One hook as the reference shows it."""

    name: str
    convention: str  # "catalog", "provider" or "run"
    signature: str  # "on_save_checkpoint(state: TrainState, checkpoint: dict[str, Any]) -> None"
    doc: str  # the docstring, cleaned (reST as written in hookspecs.py)

    @property
    def summary(self) -> str:
        return self.doc.split("\n\n", 1)[0].replace("\n", " ")


def hook_docs() -> list[HookDoc]:
    """Every hook of ``hookspecs.py``, in the order it is defined there."""
    found = []
    for name, function in vars(hookspecs).items():
        options = getattr(function, "torchtk_spec", None)
        if options is None:
            continue
        convention = "run" if name.startswith("on_") else "provider" if options.get("firstresult") else "catalog"
        found.append(HookDoc(name, convention, f"{name}{inspect.signature(function)}".replace("'", ""),
                             inspect.getdoc(function) or ""))
    return found


def hook_doc(name: str) -> HookDoc | None:
    return next((hook for hook in hook_docs() if hook.name == name), None)


def rst_to_markdown(text: str) -> str:
    """The reST subset hookspecs' docstrings use, as Markdown: ````x```` and roles as code,
    ``:param x:`` / ``:returns:`` as a list, ``.. versionadded::``, ``::`` blocks fenced."""
    out: list[str] = []
    lines = _inline(text).splitlines()  # inline code may span a line break
    index = 0
    while index < len(lines):
        line = lines[index]
        field = re.match(r"^:(param (\w+)|returns):\s*(.*)$", line)
        if line.rstrip().endswith("::"):  # a literal block follows: fence it
            out.append(line.rstrip()[:-1])
            block, index = _indented_block(lines, index + 1)
            out += ["", "```", *block, "```"] + ([""] if index < len(lines) else [])
            continue
        if field:
            label = f"`{field.group(2)}`" if field.group(2) else "Returns"
            out.append(f"- {label}: {field.group(3)}")
        elif line.startswith(".. versionadded::"):
            out.append(f"*Added in {line.split('::', 1)[1].strip()}.*")
        elif line.startswith("    ") and out and out[-1].startswith("- "):  # a field's continuation
            out[-1] += " " + line.strip()
        else:
            out.append(line)
        index += 1
    return "\n".join(out)


def _indented_block(lines: list[str], index: int) -> tuple[list[str], int]:
    while index < len(lines) and not lines[index].strip():
        index += 1
    block = []
    while index < len(lines) and (lines[index].startswith("    ") or not lines[index].strip()):
        block.append(lines[index][4:])
        index += 1
    while block and not block[-1].strip():
        block.pop()
    return block, index


def _inline(text: str) -> str:
    text = re.sub(r":(?:class|mod|func|meth|attr):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def markdown() -> str:
    """``docs/hooks.md``: the module's overview, then every hook with its signature, its
    calling convention and its docstring."""
    parts = [HEADER, "", "# Hook reference", "", rst_to_markdown(inspect.getdoc(hookspecs) or ""), ""]
    titles = {"catalog": "Catalog", "provider": "Provider calls: build one component",
              "run": "Run calls: the callbacks a spec lists"}
    seen: set[str] = set()
    for hook in hook_docs():
        if hook.convention not in seen:
            seen.add(hook.convention)
            parts += [f"## {titles[hook.convention]}", ""]
        parts += [f"### `{hook.name}`", "", *hook_section(hook), ""]
    return "\n".join(parts).rstrip() + "\n"


def hook_section(hook: HookDoc) -> list[str]:
    """One hook's entry: how an implementation is written (a run hook as a method of the
    callback object), its calling convention, its docstring."""
    if hook.convention == "run":
        code = f"class MyCallback:\n    @hookimpl\n    def {hook.signature.replace('(', '(self, ', 1)}: ..."
    else:
        code = f"@hookimpl\ndef {hook.signature}: ..."
    return ["```python", code, "```", "", f"*{CONVENTIONS[hook.convention].capitalize()}.*", "",
            rst_to_markdown(hook.doc)]


def unknown_hook_message(name: str) -> str:
    import difflib

    names = [hook.name for hook in hook_docs()]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown hook {name!r}.{hint} Hooks: {', '.join(names)}"


def table_rows() -> list[dict[str, str]]:
    """What ``tk hooks`` tabulates: name, convention, signature and first sentence."""
    return [{"hook": h.name, "call": h.convention, "signature": h.signature, "summary": _first_sentence(h.summary)}
            for h in hook_docs()]


def _first_sentence(text: str) -> str:
    text = re.sub(r" \((?:run|catalog|provider) call\)", "", _inline(text))
    return re.split(r"(?<=[.;:])\s", text, maxsplit=1)[0].rstrip(";:").rstrip(".") + "."
