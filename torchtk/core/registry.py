"""The registry: every component's name resolved to exactly one provider.

The catalog is built by calling each plugin's ``register_components`` separately, so
the registry knows who declared what. Names are resolved through that catalog, never
through pluggy's call order:

- a third-party plugin that claims a built-in name (or alias) is a *clash*: the plain
  name keeps meaning the built-in, unless the plugin's component declares
  ``replaces=True``; either provider is reachable as ``plugin::name``
  (``timm::resnet50``, ``vision_models::resnet50``);
- two third-party plugins claiming one name (with no built-in to fall back on, or both
  replacing it) are a *conflict*: a spec that uses the plain name fails naming both,
  and must pick one as ``plugin::name``.

``tk plugins`` reports both (:meth:`Registry.clashes`, :meth:`Registry.conflicts`).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import re
from typing import Any

from pydantic import BaseModel

from torchtk.core.components import KINDS, Component, kind_named
from torchtk.core.errors import (
    AmbiguousComponentError,
    BrokenPluginError,
    ParamsError,
    TorchtkError,
    UnknownComponentError,
    UserInputError,
    shorten,
)
from torchtk.core.plugin_checks import check_declared, params_model_problem
from torchtk.core.plugins import PluginHost

SCOPE_SEPARATOR = "::"


def _claims(comps: list[Component], token: str) -> str:
    """``plugin_a and plugin_b (alias of iou)``: who claims ``token``, and as what."""
    return " and ".join(c.provider + ("" if c.name == token else f" (alias of {c.name!r})") for c in comps)


def typo_distance(a: str, b: str) -> int:
    """Edits between ``a`` and ``b``, a swap of neighbours counting as one (``adma`` -> ``adam``: 1)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def closest(name: str, valid: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` names close to ``name``: difflib's candidates, fewest typing edits first
    (difflib alone ranks ``adamax`` above ``adam`` for ``adma``). A name far longer than
    any valid one is close to none (and difflib's time grows with its length)."""
    if len(name) > 2 * max(map(len, valid), default=0) + 10:
        return []
    candidates = difflib.get_close_matches(name, valid, n=n + 3, cutoff=0.6)
    return sorted(candidates, key=lambda c: (typo_distance(name, c), candidates.index(c)))[:n]


def natural_key(text: str) -> list[Any]:
    """Sort ``resnet18`` before ``resnet101``, as people expect."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def scope_names(component: Component) -> tuple[str, ...]:
    """What may stand before ``::`` to pick ``component``: its plugin's name, its
    distribution, and a built-in's module without ``torchtk.plugins.`` (``vision_models``)."""
    return (component.plugin, component.distribution, component.plugin.removeprefix("torchtk.plugins."))


def scoped(component: Component, token: str) -> str:
    """``timm::resnet50``: the shortest spelling that picks ``component`` for ``token``."""
    return f"{component.plugin.removeprefix('torchtk.plugins.')}{SCOPE_SEPARATOR}{token}"


class Registry:
    """Lists, describes and builds components, whoever provides them."""

    def __init__(self, host: PluginHost | None = None) -> None:
        self._host = host
        self._providers: dict[tuple[str, str], list[Component]] | None = None
        self._tokens: dict[tuple[str, str], list[Component]] = {}  # (kind, name or alias) -> claimants

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = PluginHost()
        return self._host

    # -- catalog -----------------------------------------------------------------------

    @property
    def providers(self) -> dict[tuple[str, str], list[Component]]:
        """``(kind, name) -> [Component, ...]``, one entry per providing plugin."""
        if self._providers is None:
            self._providers = self._collect()
        return self._providers

    def refresh(self) -> None:
        """Build the catalog again on next use: the host has loaded a plugin since (``-p``)."""
        self._providers = None
        self._tokens = {}

    def _collect(self) -> dict[tuple[str, str], list[Component]]:
        providers: dict[tuple[str, str], list[Component]] = {}
        for plugin_name, register_components in list(self.host.catalog_calls()):
            info = self.host.plugins[plugin_name]
            declared: list[Component] = []

            def register(component: Component, _declared: list[Component] = declared) -> None:
                if not isinstance(component, Component):
                    raise TypeError(f"register() takes a torchtk.Component, got {component!r}")
                _declared.append(component)

            try:
                register_components(register)
                check_declared(declared)  # a plain BaseModel as params: the plugin is broken, saying why
            except (Exception, SystemExit) as exc:
                self.host.mark_broken(plugin_name, exc)
                continue
            for component in declared:
                component = dataclasses.replace(
                    component, plugin=plugin_name, distribution=info.distribution, version=info.version
                )
                providers.setdefault((component.kind, component.name), []).append(component)
                # names and aliases share one namespace per kind: any token two plugins claim is a conflict
                for token in dict.fromkeys((component.name, *component.aliases)):
                    self._tokens.setdefault((component.kind, token), []).append(component)
        return providers

    def _kind(self, kind: str) -> str:
        found = kind_named(kind)
        if found is None:
            spellings = [k.name for k in KINDS.values()] + [k.plural for k in KINDS.values()]
            close = difflib.get_close_matches(kind.lower(), spellings, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserInputError(f"unknown kind {shorten(repr(kind))}.{hint} Valid kinds: {', '.join(KINDS)}")
        return found.name

    def components(self, kind: str | None = None, pattern: str | None = None) -> list[Component]:
        """One component per name (the one a spec would get), sorted naturally."""
        kinds = [self._kind(kind)] if kind else list(KINDS)
        found = []
        for (k, name), comps in self.providers.items():
            if k in kinds and (pattern is None or fnmatch.fnmatch(name, pattern)):
                found.append(self._winner(comps) or comps[0])
        return sorted(found, key=lambda c: (list(KINDS).index(c.kind), natural_key(c.name)))

    def names(self, kind: str, pattern: str | None = None) -> list[str]:
        """Canonical names of ``kind``, optionally filtered by a wildcard (``"*dice*"``)."""
        return [c.name for c in self.components(kind, pattern)]

    def conflicts(self) -> list[tuple[str, str, list[Component]]]:
        """Every ``(kind, name or alias)`` claimed by more than one plugin with no declared winner."""
        _ = self.providers
        return [
            (kind, token, comps)
            for (kind, token), comps in sorted(self._tokens.items())
            if len(comps) > 1 and self._winner(comps) is None
        ]

    def clashes(self) -> list[tuple[str, str, Component, list[Component]]]:
        """Every ``(kind, name or alias, winner, shadowed)`` where a built-in and a
        third-party plugin claim one token and the rule decides: the built-in wins unless
        the plugin declared ``replaces=True``. The shadowed stay reachable as ``plugin::name``."""
        _ = self.providers
        found = []
        for (kind, token), comps in sorted(self._tokens.items()):
            winner = self._winner(comps) if len(comps) > 1 else None
            if winner is not None:
                found.append((kind, token, winner, [c for c in comps if c is not winner]))
        return found

    def shadowed(self, kind: str, token: str) -> list[Component]:
        """The providers of ``token`` that the plain name does not reach (a clash's losers)."""
        _ = self.providers
        comps = self._tokens.get((kind, token), [])
        winner = self._winner(comps) if len(comps) > 1 else None
        return [c for c in comps if c is not winner] if winner is not None else []

    @staticmethod
    def _winner(comps: list[Component]) -> Component | None:
        """The provider a plain name means: the only one; else the one third-party
        component that declared ``replaces=True`` over built-ins; else the one built-in
        (a plugin that claims a built-in's name never breaks the specs that use it).
        None: a conflict between third-party plugins, which a spec must scope."""
        if len(comps) == 1:
            return comps[0]
        builtins = [c for c in comps if c.distribution == "torchtk"]
        others = [c for c in comps if c.distribution != "torchtk"]
        replacing = [c for c in others if c.replaces]
        if builtins and len(replacing) == 1:
            return replacing[0]
        if len(builtins) == 1 and not replacing:
            return builtins[0]
        return None

    # -- lookup ------------------------------------------------------------------------

    def resolve(self, kind: str, name: str) -> Component:
        """The one component ``name`` (or alias, or ``plugin::name``) means for ``kind``."""
        kind = self._kind(kind)
        _ = self.providers
        scope = None
        if SCOPE_SEPARATOR in name:
            scope, name = name.split(SCOPE_SEPARATOR, 1)
        comps = self._tokens.get((kind, name))
        if not comps:
            raise self._unknown(kind, name)
        if scope is not None:
            chosen = [c for c in comps if scope in scope_names(c)]
            if not chosen:
                raise UnknownComponentError(
                    f"no plugin {shorten(repr(scope))} provides {kind} {name!r}; providers: " + _claims(comps, name)
                    + ". Write one of: " + ", ".join(scoped(c, name) for c in comps))
            return chosen[0]
        winner = self._winner(comps)
        if winner is None:
            raise AmbiguousComponentError(
                f"{kind} {name!r} is claimed by more than one plugin: {_claims(comps, name)}. "
                "Choose one explicitly: " + " or ".join(f'"{scoped(c, name)}"' for c in comps) + "."
            )
        return winner

    def _unknown(self, kind: str, name: str) -> TorchtkError:
        valid = sorted(token for (k, token) in self._tokens if k == kind)
        close = closest(name, valid)
        plural = KINDS[kind].plural
        message = f"unknown {kind} {shorten(repr(name))}."
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        message += f" Run `tk list {plural}` to see the valid names."
        broken = [p for p in self.host.plugins.values() if p.broken]
        if broken:
            names = ", ".join(f"{p.name} ({p.reason})" for p in broken)
            error = BrokenPluginError(message + f" Plugins that failed to load and may provide it: {names}.")
            error.__cause__ = broken[0].error
            return error
        return UnknownComponentError(message)

    def describe(self, kind: str, name: str) -> dict[str, Any]:
        """Everything ``tk show`` displays, as plain data."""
        component = self.resolve(kind, name)
        model = self.params_model(component)
        properties = model.model_json_schema().get("properties", {})
        params = []
        for field_name, field in model.model_fields.items():
            schema = properties.get(field_name, {})
            params.append({
                "name": field_name,
                "type": _schema_type(schema),
                "required": field.is_required(),
                "default": None if field.is_required() else _jsonable(field.get_default(call_default_factory=True)),
                "bounds": _bounds(schema),
                "description": field.description or "",
            })
        return {
            "kind": component.kind,
            "name": component.name,
            "summary": component.summary,
            "description": component.description,
            "aliases": list(component.aliases),
            "plugin": component.plugin,
            "distribution": component.distribution,
            "version": component.version,
            "extras": dict(component.extras),
            "params": params,
        }

    # -- building ----------------------------------------------------------------------

    def params_model(self, component: Component) -> type[BaseModel]:
        """The component's params model; a plugin whose lazy model fails to load is broken."""
        try:
            model = component.params_model
            problem = params_model_problem(model)  # a lazy model, loaded now
            if problem:
                raise TypeError(problem)
            return model
        except Exception as exc:
            info = self.host.plugins.get(component.plugin)
            if info is not None and not info.broken:
                self.host.mark_broken(component.plugin, exc)
            raise BrokenPluginError(
                f"{component.kind} {component.name!r} of plugin {component.plugin!r} cannot load its params "
                f"model: {type(exc).__name__}: {exc}") from exc

    def validate_params(self, component: Component, params: dict[str, Any]) -> BaseModel:
        """Validate raw params against the component's model (raises pydantic's error).

        This registry is the validation context (``info.context["registry"]``), so a
        params model that names other components (a scheduler inside ``warmup``)
        resolves them here, not in the process-wide registry.
        """
        return self.params_model(component).model_validate(params, context={"registry": self})

    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        """Build a component from keyword params; run objects (``optimizer=``, ``model=``)
        are passed through to the hook, everything else is validated as params.

        Errors read as the CLI's: an unknown name gets the same "did you mean", invalid
        params a :class:`~torchtk.core.errors.ParamsError` with one line per problem
        (``loss 'focal': gamma: Input should be greater than or equal to 0 (got -1.0)``).
        """
        from pydantic import ValidationError

        from torchtk.core.spec.problems import problems_from

        kind = self._kind(kind)
        context_names = KINDS[kind].context
        context = {k: kwargs.pop(k) for k in list(kwargs) if k in context_names}
        component = self.resolve(kind, name)
        try:
            params = self.validate_params(component, kwargs)
        except ValidationError as exc:
            raise ParamsError(problems_from(exc, (), self.params_model(component)),
                              f"{kind} {component.name!r}") from None
        return self.build(component, params, **context)

    def build(self, component: Component, params: BaseModel, **context: Any) -> Any:
        """Call the providing plugin's hook with already validated params."""
        hook = KINDS[component.kind].hook
        built = self.host.call_provider(hook, component.plugin, name=component.name, params=params, **context)
        if built is None:
            raise TorchtkError(
                f"plugin {component.plugin!r} declares {component.kind} {component.name!r} "
                f"but its {hook} hook returned None"
            )
        return built


_BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
               "minLength", "maxLength", "pattern")


def _schema_type(schema: dict[str, Any]) -> str:
    """A JSON-flavoured type name: ``number``, ``array[integer]``, ``"mean" | "sum"``, ``number | null``."""
    if "anyOf" in schema:
        return " | ".join(_schema_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array" and "items" in schema:
        return f"array[{_schema_type(schema['items'])}]"
    return kind


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    found = {k: schema[k] for k in _BOUND_KEYS if k in schema}
    for option in schema.get("anyOf", ()):
        found.update(_bounds(option))
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    return repr(value)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests, embedding applications)."""
    global _default
    _default = registry
