"""``tk new-plugin NAME``: write a ready-to-install plugin package from the bundled templates.

The package has a ``src/`` layout (its tests run against the installed copy), a
``torchtk`` entry point, a function-style loss, a callback, tests that use
:mod:`torchtk.testing`, and a README. Nothing that exists is ever overwritten: the
target folder must be new or empty, and each file is created exclusively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from torchtk.core.errors import UserInputError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
PREFIX = re.compile(r"^torchtk[-_]")

# template file -> where it goes in the package (``$module`` is the import name)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "plugin.py.tmpl": "src/$module/__init__.py",
    "callbacks.py.tmpl": "src/$module/callbacks.py",
    "test_plugin.py.tmpl": "tests/test_plugin.py",
}


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from ``tk new-plugin NAME``."""

    name: str  # the folder: NAME as given
    distribution: str  # torchtk-demo
    module: str  # torchtk_demo
    entry_point: str  # demo
    prefix: str  # demo: the start of every component name (demo_smooth_bce)

    def substitutions(self) -> dict[str, str]:
        from torchtk import _version

        found = re.match(r"^\d+\.\d+", _version())  # the running torchtk's minor version is the floor
        floor = found.group(0) if found else "0.1"
        return {"name": self.name, "distribution": self.distribution, "module": self.module,
                "entry_point": self.entry_point, "prefix": self.prefix, "torchtk_floor": floor}


def plugin_names(name: str) -> PluginNames:
    """The distribution, module, entry-point and component names for ``NAME``, or an input error."""
    if not NAME_PATTERN.match(name):
        raise UserInputError(
            f"new-plugin: {name!r} is not a valid plugin name: use lowercase letters and digits, with single "
            "'-' or '_' between words, starting with a letter (for example 'demo' or 'my-losses'); it names the "
            "folder, the distribution torchtk-NAME and the module torchtk_NAME")
    short = PREFIX.sub("", name)
    if not short:
        raise UserInputError(f"new-plugin: {name!r} needs a name after 'torchtk-' (for example 'torchtk-demo')")
    prefix = short.replace("-", "_")
    return PluginNames(name=name, distribution=f"torchtk-{short.replace('_', '-')}", module=f"torchtk_{prefix}",
                       entry_point=prefix, prefix=prefix)


def _target(names: PluginNames, parent: Path) -> Path:
    if parent.exists() and not parent.is_dir():
        raise UserInputError(f"new-plugin: --dir {parent} is not a folder")
    target = parent / names.name
    if target.exists() and not target.is_dir():
        raise UserInputError(f"new-plugin: {target} exists and is not a folder; choose another NAME or --dir")
    if target.is_dir() and any(target.iterdir()):
        raise UserInputError(f"new-plugin: the folder {target} exists and is not empty; nothing was written. "
                             "Choose another NAME, or --dir for another parent folder")
    return target


def new_plugin(name: str, parent: str | Path = ".") -> tuple[PluginNames, Path, list[Path]]:
    """Write the plugin package ``parent/NAME``; returns its names, its folder and the files written."""
    names = plugin_names(name)
    target = _target(names, Path(parent))
    values = names.substitutions()
    templates = resources.files("torchtk") / "templates" / "plugin"
    written = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for template, destination in FILES.items():
            path = target / Template(destination).substitute(values)
            path.parent.mkdir(parents=True, exist_ok=True)
            text = Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)
            with open(path, "x", encoding="utf-8") as handle:  # "x": never replace a file
                handle.write(text)
            written.append(path)
    except FileExistsError as exc:
        raise UserInputError(f"new-plugin: {exc.filename} appeared while writing; nothing of yours was "
                             "overwritten") from None
    except OSError as exc:
        raise UserInputError(f"new-plugin: cannot write {getattr(exc, 'filename', None) or target}: "
                             f"{exc.strerror or exc}") from None
    return names, target, written
