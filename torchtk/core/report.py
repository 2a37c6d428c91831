"""What ``tk list`` and ``tk plugins`` show, as plain data (the CLI only renders it).

Nothing here imports torch: these read the catalog plugins declare, never build a
component.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from torchtk.core.components import KINDS

if TYPE_CHECKING:
    from torchtk.core.components import Component
    from torchtk.core.registry import Registry

BUILTIN_PREFIX = "torchtk.plugins."


def short_provider(component: Component) -> str:
    """``losses.classification`` for a built-in, ``name (dist version)`` for others."""
    if component.distribution == "torchtk":
        return component.plugin.removeprefix(BUILTIN_PREFIX)
    return component.provider


def short_plugin_name(name: str) -> str:
    """A plugin's name as tables show it: built-ins without ``torchtk.plugins.``."""
    return name.removeprefix(BUILTIN_PREFIX)


def kind_counts(registry: Registry) -> dict[str, int]:
    """``{kind: number of components}`` for every kind, in the order of ``KINDS``."""
    return {kind: len(registry.names(kind)) for kind in KINDS}


def _listed(registry: Registry, kind: str, pattern: str | None) -> list[tuple[Component, bool]]:
    """The components ``tk list KIND`` shows, each with whether its name is in conflict."""
    conflicted = {(k, n) for k, n, _ in registry.conflicts()}
    return [(c, (c.kind, c.name) in conflicted) for c in registry.components(kind, pattern)]


def component_list(registry: Registry, kind: str, pattern: str | None = None) -> list[dict[str, Any]]:
    """The components of ``kind`` whose names match ``pattern`` (``tk list KIND --json``):
    ``name``, ``aliases``, ``summary``, ``plugin``, ``distribution``, and ``conflict``
    (another plugin claims the name too, so a spec must scope it)."""
    return [{"name": c.name, "aliases": list(c.aliases), "summary": c.summary, "plugin": c.plugin,
             "distribution": c.distribution, "conflict": conflict}
            for c, conflict in _listed(registry, kind, pattern)]


def component_rows(registry: Registry, kind: str, pattern: str | None = None) -> list[dict[str, Any]]:
    """The same components as :func:`component_list`, as ``tk list KIND`` tabulates them:
    ``name`` (marked ``(conflict)``), ``provider`` (:func:`short_provider`), ``summary``
    and ``aliases``."""
    return [{"name": c.name + (" (conflict)" if conflict else ""), "provider": short_provider(c),
             "summary": c.summary, "aliases": list(c.aliases)}
            for c, conflict in _listed(registry, kind, pattern)]


def plugin_report(registry: Registry) -> dict[str, list[dict[str, Any]]]:
    """Every plugin the host knows, the working and the broken, and every conflict.

    ``{"plugins": [{"name", "builtin", "distribution", "version", "provides"
    ({kind: count}), "hooks", "status" ("ok" or "broken: <reason>")}, ...],
    "conflicts": [{"kind", "name", "providers": [provenance, ...]}, ...],
    "slow": [...]}`` (:func:`slow_plugins`)
    """
    provided: dict[str, Counter[str]] = {}
    for comps in registry.providers.values():
        for c in comps:
            provided.setdefault(c.plugin, Counter())[c.kind] += 1
    plugins = [{
        "name": info.name, "builtin": info.builtin, "distribution": info.distribution,
        "version": info.version, "provides": dict(provided.get(info.name, {})), "hooks": info.hooks,
        "status": f"broken: {info.reason}" if info.broken else "ok",
    } for info in registry.host.plugins.values()]
    conflicts = [{"kind": k, "name": n, "providers": [c.provider for c in comps]}
                 for k, n, comps in registry.conflicts()]
    return {"plugins": plugins, "conflicts": conflicts, "slow": slow_plugins(registry)}


def slow_plugins(registry: Registry) -> list[dict[str, Any]]:
    """The plugins that make listing slow: ``{"name", "seconds", "imports" (heavy modules
    their import pulled in), "note"}`` (``tk plugins`` prints the note)."""
    from torchtk.core.plugin_checks import slow_plugin_note

    found = []
    for info in registry.host.plugins.values():
        note = slow_plugin_note(info)
        if note is not None:
            found.append({"name": info.name, "seconds": round(info.import_cost.seconds, 3),
                          "imports": list(info.import_cost.heavy), "note": note})
    return found


__all__ = ["component_list", "component_rows", "kind_counts", "plugin_report", "short_plugin_name", "short_provider",
           "slow_plugins"]
