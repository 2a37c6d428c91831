"""Helpers for testing plugins, used by torchtk's own tests and by plugin authors.

    from torchtk.testing import registry_with, check_plugin

    def test_my_plugin_is_installed():
        registry = registry_with(my_plugin)
        assert "my_loss" in registry.names("loss")

    def test_my_plugin_conforms():
        assert check_plugin(registry_with(my_plugin), "my_plugin") == []
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from torchtk.core.plugins import PluginHost
from torchtk.core.registry import Registry

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def registry_with(*plugins: Any, builtins: bool = True, entry_points: bool = False) -> Registry:
    """A fresh registry with the built-ins (optional) plus ``plugins`` (modules or objects).

    Each plugin is registered under its ``__name__`` (or ``name`` attribute), as an
    installed plugin would be. Entry points are off by default so tests are hermetic.
    """
    host = PluginHost(builtins=None if builtins else (), entry_points=entry_points)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or getattr(plugin, "name", None) or type(plugin).__name__
        try:
            host.register(plugin, name)
        except Exception as exc:
            host.mark_broken(name, exc)
    return Registry(host)


def check_plugin(registry: Registry, plugin: str) -> list[str]:
    """Conformance problems of one plugin's components (an empty list means it conforms).

    Checks what users and ``tk show`` rely on: snake_case names, a one-line summary,
    a strict params model (``extra="forbid"``) with a description for every field.
    """
    problems = []
    info = registry.host.plugins.get(plugin)
    if info is None:
        return [f"plugin {plugin!r} is not installed"]
    if info.broken:
        return [f"plugin {plugin!r} is broken: {info.reason}"]
    components = [c for comps in registry.providers.values() for c in comps if c.plugin == plugin]
    if not components:
        problems.append(f"plugin {plugin!r} declares no components")
    for c in components:
        where = f"{c.kind} {c.name!r}"
        if not _SNAKE.match(c.name):
            problems.append(f"{where}: name is not snake_case")
        if not c.summary or "\n" in c.summary:
            problems.append(f"{where}: summary must be one non-empty line")
        model = c.params_model
        if not issubclass(model, BaseModel):
            problems.append(f"{where}: params is not a pydantic model")
            continue
        if model.model_config.get("extra") != "forbid":
            problems.append(f"{where}: params model must forbid unknown keys (subclass torchtk.Params)")
        for field_name, field in model.model_fields.items():
            if not field.description:
                problems.append(f"{where}: param {field_name!r} has no description")
    return problems
