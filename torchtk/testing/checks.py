"""``check_plugin``: does a plugin keep the component contract, statically and by behaviour?

Static checks read the catalog (what ``tk list`` and ``tk show`` rely on); behaviour
checks build every component with its defaults and use it as a run would
(:mod:`torchtk.testing.behaviour`), and a child process checks that listing the plugin
imports no torch (:mod:`torchtk.testing.listing`).
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from typing import Any, Iterable, Mapping

from pydantic import BaseModel

from torchtk.core.components import Component
from torchtk.core.plugins import PluginHost, PluginInfo
from torchtk.core.registry import Registry

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginReport(list):
    """The problems found (a ``list[str]``: ``report == []`` means the plugin conforms),
    plus what was checked by behaviour and what was skipped, with the reason."""

    def __init__(self, plugin: str, problems: Iterable[str] = ()) -> None:
        super().__init__(problems)
        self.plugin = plugin
        self.checked: list[str] = []
        self.skipped: dict[str, str] = {}

    def __str__(self) -> str:
        lines = [f"plugin {self.plugin!r}: {len(self)} problem(s), {len(self.checked)} component(s) checked by "
                 f"behaviour, {len(self.skipped)} skipped"]
        lines += [f"  - {problem}" for problem in self]
        return "\n".join(lines)


def registry_with(*plugins: Any, builtins: bool = True, entry_points: bool = False) -> Registry:
    """A fresh registry with the built-ins (optional) plus ``plugins`` (modules or objects).

    Each plugin is registered under its ``__name__`` (or ``name`` attribute), as an
    installed plugin would be. Entry points are off by default so tests are hermetic.
    """
    host = PluginHost(builtins=None if builtins else (), entry_points=entry_points)
    for plugin in plugins:
        name = _object_name(plugin)
        try:
            host.register(plugin, name)
        except Exception as exc:
            host.mark_broken(name, exc)
    return Registry(host)


def registry_for(plugin: Any) -> Registry:
    """The built-ins plus ``plugin`` only: loaded from its entry point when it is installed
    (so its distribution and version show), else imported (a module name) or registered
    as given (a module or plugin object). Other installed plugins are left out."""
    if not isinstance(plugin, str):
        return registry_with(plugin)
    from importlib import metadata

    from torchtk.core.plugins import ENTRY_POINT_GROUP

    host = None
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):  # every entry point of a distribution named
        dist = ep.dist.name if ep.dist is not None else ""
        named = plugin in (ep.name, ep.value, ep.value.partition(":")[0])
        if named or (dist and _canonical(dist) == _canonical(plugin)):
            host = host or PluginHost(entry_points=False)
            if ep.name not in host.plugins:
                host._load(ep.value, ep.name, builtin=False, distribution=dist,
                           version=ep.dist.version if ep.dist is not None else "", entry_point=ep)
    return Registry(host) if host is not None else registry_with(importlib.import_module(plugin))


def _object_name(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or getattr(plugin, "name", None) or type(plugin).__name__


def _canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Torchtk_Timm`` == ``torchtk-timm``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _find(registry: Registry, wanted: str) -> str | None:
    """The plugin name under which ``wanted`` (plugin, module, entry-point or distribution
    name) is registered in ``registry``."""
    plugins = registry.host.plugins
    if wanted in plugins:
        return wanted
    for name, info in plugins.items():
        module = info.module.partition(":")[0]
        if wanted in (module, info.module, name.rpartition(":")[2]):
            return name
    matches = [name for name, info in plugins.items()
               if info.distribution and _canonical(info.distribution) == _canonical(wanted)]
    if len(matches) > 1:
        raise _Ambiguous(f"distribution {wanted!r} provides {len(matches)} plugins ({', '.join(matches)}); "
                         "check each by its entry-point name")
    return matches[0] if matches else None


class _Ambiguous(Exception):
    """A distribution name that stands for more than one plugin."""


def locate(plugin: Any, registry: Registry | None = None) -> tuple[Registry, str | None, str]:
    """``(registry, plugin name or None, what the user called it)`` for any way of naming a plugin."""
    if not isinstance(plugin, str):
        name = _object_name(plugin)
        if registry is None:
            return registry_with(plugin), name, name
        found = next((n for n, _ in registry.host.pm.list_name_plugin() if registry.host.pm.get_plugin(n) is plugin),
                     None)
        return registry, found or _find(registry, name), name
    if registry is not None:
        return registry, _find(registry, plugin), plugin
    installed = Registry(PluginHost())
    found = _find(installed, plugin)
    if found is not None:
        return installed, found, plugin
    try:
        module = importlib.import_module(plugin)
    except ImportError:
        return installed, None, plugin
    return registry_with(module), module.__name__, plugin


def _not_found(registry: Registry, plugin: str) -> str:
    third_party = [f"{n} ({i.distribution})" if i.distribution else n
                   for n, i in registry.host.plugins.items() if not i.builtin]
    return (f"plugin {plugin!r} is not installed: no plugin, module, entry-point or distribution of that name "
            f"(installed third-party plugins: {', '.join(third_party) or 'none'})")


def check_plugin(plugin: Any, registry: Any = None, *, behaviour: bool | None = None,
                 params: Mapping[str, Mapping[str, Any]] | None = None,
                 samples: Mapping[str, Any] | None = None, skip: Mapping[str, str] | None = None,
                 only: Iterable[str] | None = None) -> PluginReport:
    """Conformance problems of one plugin's components (an empty list means it conforms).

    ``plugin``: its module (or plugin object), module name, entry-point name or
    distribution name; ``check_plugin(registry, name)`` (the registry first, the older
    form) works too, and runs the static checks only unless ``behaviour=True``.
    ``registry``: where to find it (default: built-ins and installed plugins).

    Static checks: snake_case names, a one-line summary, a strict params model
    (``torchtk.Params``) with a description on every field. With ``behaviour`` (the
    default of the plugin-first form) each component is also built and used (:mod:`torchtk.testing.behaviour`),
    and a child process checks that listing the plugin imports no torch. ``params``,
    ``samples`` and ``skip`` are keyed by ``"name"`` or ``"kind:name"``: params for
    components whose defaults do not build, your own ``(output, target)`` batch for a
    loss or metric, and components not to use, with the reason. ``only``: patterns
    (``"model:convnext_*"``) limiting the behaviour checks.
    """
    if isinstance(plugin, Registry):
        plugin, registry = registry, plugin
        behaviour = bool(behaviour)
    elif behaviour is None:
        behaviour = True
    try:
        registry, name, called = locate(plugin, registry)
    except _Ambiguous as exc:
        return PluginReport(str(plugin), [str(exc)])
    if name is None:
        return PluginReport(called, [_not_found(registry, called)])
    report = PluginReport(name)
    info = registry.host.plugins[name]
    if info.broken:
        report.append(f"plugin {name!r} is broken: {info.reason}")
        return report
    components = [c for comps in registry.providers.values() for c in comps if c.plugin == name]
    if info.broken:  # its register_components raised while the catalog was collected
        report.append(f"plugin {name!r} is broken: {info.reason}")
        return report
    if not components:
        report.append(f"plugin {name!r} declares no components")
    for component in components:
        report.extend(static_problems(component))
    if behaviour:
        _check_behaviour(registry, info, components, report, params or {}, samples or {}, skip or {}, only)
    return report


def assert_plugin_ok(plugin: Any, registry: Any = None, **options: Any) -> PluginReport:
    """:func:`check_plugin`, raising an ``AssertionError`` that lists every problem."""
    report = check_plugin(plugin, registry, **options)
    if report:
        raise AssertionError(str(report))
    return report


def static_problems(c: Component) -> list[str]:
    """What ``tk list``/``tk show`` need of a catalog entry."""
    where = f"{c.kind} {c.name!r}"
    problems = []
    if not _SNAKE.match(c.name):
        problems.append(f"{where}: name is not snake_case")
    if not c.summary or "\n" in c.summary:
        problems.append(f"{where}: summary must be one non-empty line")
    try:
        model = c.params_model
    except Exception as exc:
        return problems + [f"{where}: params model does not load: {type(exc).__name__}: {exc}"]
    if not issubclass(model, BaseModel):
        return problems + [f"{where}: params is not a pydantic model"]
    if model.model_config.get("extra") != "forbid":
        problems.append(f"{where}: params model must forbid unknown keys (subclass torchtk.Params)")
    for field_name, field in model.model_fields.items():
        if not field.description:
            problems.append(f"{where}: param {field_name!r} has no description")
    return problems


def keyed(table: Mapping[str, Any], component: Component) -> Any:
    """``table["kind:name"]`` or ``table["name"]``, else ``None``."""
    for key in (f"{component.kind}:{component.name}", component.name):
        if key in table:
            return table[key]
    return None


def _selected(component: Component, only: Iterable[str] | None) -> bool:
    if only is None:
        return True
    return any(fnmatch.fnmatch(f"{component.kind}:{component.name}", p) or fnmatch.fnmatch(component.name, p)
               for p in only)


def _check_behaviour(registry: Registry, info: PluginInfo, components: list[Component], report: PluginReport,
                     params: Mapping[str, Any], samples: Mapping[str, Any], skip: Mapping[str, str],
                     only: Iterable[str] | None) -> None:
    from torchtk.testing import behaviour, listing

    only = list(only) if only is not None else None
    for component in components:
        where = f"{component.kind} {component.name!r}"
        reason = keyed(skip, component)
        if reason is None and not _selected(component, only):
            reason = f"not selected by only={only}"
        if reason is not None:
            report.skipped[where] = str(reason)
            continue
        outcome = behaviour.check_component(registry, component, keyed(params, component), keyed(samples, component))
        if outcome.skipped:
            report.skipped[where] = outcome.skipped
        else:
            report.checked.append(where)
            report.extend(outcome.problems)
    problem, skipped = listing.listing_imports_torch(info)
    if problem:
        report.append(problem)
    if skipped:
        report.skipped[f"listing of {info.name!r}"] = skipped
