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


def _also(registry: Registry, component: Component) -> list[str]:
    """``["timm::resnet50"]``: the other providers of a clashing name, as a spec picks them."""
    from torchtk.core.registry import scoped

    return [scoped(c, component.name) for c in registry.shadowed(component.kind, component.name)]


def component_list(registry: Registry, kind: str, pattern: str | None = None) -> list[dict[str, Any]]:
    """The components of ``kind`` whose names match ``pattern`` (``tk list KIND --json``):
    ``name``, ``aliases``, ``summary``, ``plugin``, ``distribution``, ``conflict``
    (another plugin claims the name too, so a spec must scope it) and ``also`` (the
    providers the plain name does not reach, as ``plugin::name``)."""
    return [{"name": c.name, "aliases": list(c.aliases), "summary": c.summary, "plugin": c.plugin,
             "distribution": c.distribution, "conflict": conflict, "also": _also(registry, c)}
            for c, conflict in _listed(registry, kind, pattern)]


def component_rows(registry: Registry, kind: str, pattern: str | None = None) -> list[dict[str, Any]]:
    """The same components as :func:`component_list`, as ``tk list KIND`` tabulates them:
    ``name`` (marked ``(conflict)``), ``provider`` (:func:`short_provider`), ``summary``,
    ``aliases`` and ``also``."""
    return [{"name": c.name + (" (conflict)" if conflict else ""), "provider": short_provider(c),
             "summary": c.summary, "aliases": list(c.aliases), "also": _also(registry, c)}
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
    return {"plugins": plugins, "conflicts": conflicts, "clashes": clash_report(registry), "slow": slow_plugins(registry)}


def clash_report(registry: Registry) -> list[dict[str, Any]]:
    """Every built-in name a third-party plugin claims too, and who the plain name means:
    ``{"kind", "name", "winner", "shadowed": [provenance, ...], "pick": ["timm::resnet50", ...]}``."""
    from torchtk.core.registry import scoped

    return [{"kind": k, "name": n, "winner": winner.provider, "shadowed": [c.provider for c in losers],
             "pick": [scoped(c, n) for c in losers]}
            for k, n, winner, losers in registry.clashes()]


def clash_lines(clashes: list[dict[str, Any]], shown: int = 8) -> list[str]:
    """``tk plugins``' clash lines, one per (shadowed plugin, kind, winner):
    ``clash: timm (torchtk-timm 0.1.0) also provides 35 model names of torchtk.plugins.vision_models
    (convnext_base, ...); the plain names keep those, timm::NAME picks timm's ...``."""
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for c in clashes:
        for provider, pick in zip(c["shadowed"], c["pick"]):
            scope = pick.rsplit("::", 1)[0]
            groups.setdefault((provider, scope, c["kind"], c["winner"]), []).append(c["name"])
    lines = []
    for (provider, scope, kind, winner), names in groups.items():
        if len(names) == 1:
            what, keep = f"the {kind} name {names[0]} of {winner}", f"plain {names[0]!r} keeps that one"
        else:
            listed = ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
            what, keep = f"{len(names)} {kind} names of {winner} ({listed})", "the plain names keep those"
        lines.append(f"clash: {provider} also provides {what}; {keep}, {scope}::NAME picks {scope}'s "
                     f"(a component declaring replaces=True would take the plain name)")
    return lines


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


__all__ = ["clash_lines", "clash_report", "component_list", "component_rows", "kind_counts", "plugin_report",
           "short_plugin_name", "short_provider", "slow_plugins"]
