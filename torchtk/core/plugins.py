"""Finding, loading and calling plugins: built-ins, entry points, and broken ones.

Environment switches (one scheme, as pytest, datasette and llm have):

* ``TORCHTK_DISABLE_PLUGINS=a,b`` -- do not load these third-party plugins
  (entry-point names); ``all`` disables every third-party plugin.
* ``TORCHTK_LOAD_PLUGINS=a,b`` -- load only these third-party plugins.
* ``TORCHTK_STRICT_PLUGINS=1`` -- a plugin that fails to load is fatal (for CI).
* ``TORCHTK_TRACE_PLUGINS=1`` -- print every hook call to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Mapping, Sequence

import pluggy

from torchtk.core import hookspecs
from torchtk.core.errors import BrokenPluginError, TorchtkError
from torchtk.core.plugin_checks import measure_import

ENTRY_POINT_GROUP = "torchtk"


class PluginWarning(UserWarning):
    """A plugin failed to load; everything else keeps working."""


@dataclass
class PluginInfo:
    """One plugin as ``tk plugins`` shows it."""

    name: str
    module: str
    builtin: bool
    distribution: str = ""
    version: str = ""
    error: BaseException | None = None
    hooks: list[str] = field(default_factory=list)
    import_cost: Any = None  # plugin_checks.ImportCost of loading it: seconds, heavy modules it pulled in

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def reason(self) -> str:
        if self.error is None:
            return ""
        return f"{type(self.error).__name__}: {self.error}"


def tracing_enabled() -> bool:
    return os.environ.get("TORCHTK_TRACE_PLUGINS", "") not in ("", "0")


def trace_hooks(manager: pluggy.PluginManager) -> None:
    """Print every hook call of ``manager`` to stderr (``TORCHTK_TRACE_PLUGINS=1``)."""
    manager.trace.root.setwriter(lambda text: sys.stderr.write("torchtk trace: " + text))
    manager.enable_tracing()


def trace_provider_calls(manager: pluggy.PluginManager) -> Callable[[], None]:
    """Print one line per provider call of ``manager`` to stderr, naming the plugins
    pluggy actually calls (the provider, once even if it also wraps the hook):
    ``torchtk trace: make_loss(name='focal') -> torchtk.plugins.losses.classification``.

    Pluggy's own tracing (:func:`trace_hooks`) prints every argument on its own line,
    a whole model's repr included; a provider call is identified by its hook and name.
    Returns the function that undoes it.
    """

    def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        answering = ", ".join(dict.fromkeys(impl.plugin_name for impl in reversed(impls))) or "no plugin"
        sys.stderr.write(f"torchtk trace: {hook_name}(name={kwargs.get('name')!r}) -> {answering}\n")

    def after(outcome: Any, hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        pass

    return manager.add_hookcall_monitoring(before, after)


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _own_version() -> str:
    try:
        return metadata.version("torchtk")
    except metadata.PackageNotFoundError:
        return "dev"


class PluginHost:
    """A pluggy manager plus what we know about each plugin (origin, errors).

    Built-in plugins are dotted module paths imported on first use; third-party ones
    come from the ``torchtk`` entry-point group. A plugin that fails to import or
    validate is recorded as broken, warned about once, and left out.
    """

    def __init__(self, builtins: Iterable[str] | None = None, entry_points: bool = True) -> None:
        if builtins is None:
            from torchtk.plugins import BUILTIN_PLUGINS

            builtins = BUILTIN_PLUGINS
        self.pm = pluggy.PluginManager("torchtk")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.strict = os.environ.get("TORCHTK_STRICT_PLUGINS", "") not in ("", "0")
        self.tracing = tracing_enabled()
        if self.tracing:
            trace_provider_calls(self.pm)
        version = _own_version()
        for module_name in builtins:
            self._load(module_name, module_name, builtin=True, distribution="torchtk", version=version)
        if entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        disabled = _env_names("TORCHTK_DISABLE_PLUGINS") or set()
        only = _env_names("TORCHTK_LOAD_PLUGINS")
        if "all" in disabled:
            return
        seen: set[tuple[str, str, str]] = set()
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        for variable, names in (("TORCHTK_DISABLE_PLUGINS", disabled), ("TORCHTK_LOAD_PLUGINS", only or set())):
            unknown = sorted(names - {ep.name for ep in entry_points})
            if unknown:
                warnings.warn(f"{variable} names no installed plugin: {', '.join(unknown)}; installed: "
                              f"{', '.join(sorted({ep.name for ep in entry_points})) or 'none'}", PluginWarning,
                              stacklevel=3)
        for ep in entry_points:
            dist = ep.dist.name if ep.dist is not None else ""
            version = ep.dist.version if ep.dist is not None else ""
            key = (dist, ep.name, ep.value)
            if key in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(key)
            if ep.name in disabled or (only is not None and ep.name not in only):
                continue
            name = ep.name if ep.name not in self.plugins else f"{dist}:{ep.name}"
            self._load(ep.value, name, builtin=False, distribution=dist, version=version, entry_point=ep)

    def _load(self, target: str, name: str, *, builtin: bool, distribution: str, version: str,
              entry_point: metadata.EntryPoint | None = None) -> None:
        info = PluginInfo(name=name, module=target, builtin=builtin, distribution=distribution, version=version)
        self.plugins[name] = info
        try:
            with measure_import() as info.import_cost:  # tk plugins names a plugin that makes listing slow
                plugin = entry_point.load() if entry_point is not None else importlib.import_module(target)
            self.register(plugin, name, info)
        except (Exception, SystemExit) as exc:  # a broken plugin (sys.exit too) never takes the host down
            self.mark_broken(name, exc)

    def load_named(self, name: str, load: Callable[[], Any], *, target: str, version: str = "") -> PluginInfo:
        """Load a plugin a run names (a spec's ``plugins``, ``-p``: a file or a module, see
        :mod:`torchtk.core.user_plugins`) with ``load()``, recorded as an entry point is."""
        if self.pm.get_plugin(name) is not None:  # the same file again, edited since: the new one replaces it
            self.pm.unregister(name=name)
        info = PluginInfo(name=name, module=target, builtin=False, version=version)
        self.plugins[name] = info
        try:
            self.register(load(), name, info)
        except (Exception, SystemExit) as exc:  # reported by the caller, naming the file
            self.mark_broken(name, exc)
        return info

    def register(self, plugin: Any, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object (a module or any object with hookimpls) under ``name``."""
        if info is None:
            info = PluginInfo(name=name, module=getattr(plugin, "__name__", repr(plugin)), builtin=False)
        self.plugins[name] = info
        self.pm.register(plugin, name=name)
        unknown = [c.name for c in self.pm.get_hookcallers(plugin) or () if c.spec is None]
        if unknown:
            self.pm.unregister(plugin)
            hints = []
            for hook in unknown:
                close = difflib.get_close_matches(hook, self.hook_names(), n=1)
                hints.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TorchtkError(f"implements unknown hook {', '.join(hints)}")
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or ())

    def mark_broken(self, name: str, error: BaseException) -> None:
        """Record that plugin ``name`` failed: warn once, or raise in strict mode."""
        info = self.plugins[name]
        info.error = error
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        if self.strict:
            raise BrokenPluginError(f"torchtk plugin {name!r} failed to load: {info.reason} "
                                    "(fatal because TORCHTK_STRICT_PLUGINS is set)") from error
        warnings.warn(f"torchtk plugin {name!r} failed to load and is skipped: {info.reason}", PluginWarning,
                      stacklevel=2)

    # -- calling -----------------------------------------------------------------------

    @staticmethod
    def hook_names() -> list[str]:
        return [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "torchtk_spec")]

    def catalog_calls(self) -> Iterable[tuple[str, Any]]:
        """``(plugin name, register_components implementation)`` for each live plugin,
        in registration order (built-ins first)."""
        for impl in reversed(self.pm.hook.register_components.get_hookimpls()):
            if self.tracing:
                sys.stderr.write(f"torchtk trace: register_components -> {self.pm.get_name(impl.plugin)}\n")
            yield self.pm.get_name(impl.plugin), impl.function

    def call_provider(self, hook: str, plugin_name: str, **kwargs: Any) -> Any:
        """Call ``hook`` on plugin ``plugin_name`` only, through pluggy.

        Pluggy calls the hook with ``firstresult`` semantics on a subset caller that
        leaves out every other plugin: the providing plugin's own wrappers
        (``@hookimpl(wrapper=True)``) apply, another plugin's never do, since installing
        a plugin must not change a run that does not ask for its components. Every
        hookspec argument is passed by keyword; one not given (``model`` outside a
        run) is ``None``. An implementation takes any subset of them.
        """
        caller = getattr(self.pm.hook, hook)
        spec = caller.spec
        assert spec is not None, hook
        unexpected = [arg for arg in kwargs if arg not in spec.argnames]
        if unexpected:
            raise TypeError(f"{hook}() got unexpected argument(s) {', '.join(map(repr, unexpected))}; "
                            f"its hookspec takes {', '.join(spec.argnames)}")
        plugin = self.pm.get_plugin(plugin_name)
        impls = caller.get_hookimpls()
        if plugin is None or not any(impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper)
                                     for impl in impls):
            raise TorchtkError(
                f"plugin {plugin_name!r} declares a component but does not implement the {hook!r} hook")
        others = [impl.plugin for impl in impls if impl.plugin is not plugin]
        subset = self.pm.subset_hook_caller(hook, remove_plugins=others)
        return subset(**{arg: kwargs.get(arg) for arg in spec.argnames})


def listing_cost_problem(module: str) -> str | None:
    """Why importing plugin ``module`` makes every ``tk list`` slow (it pulls in torch or
    another heavy library, or takes over a second on its own), measured in a fresh interpreter;
    ``None`` when it loads cheaply. For ``torchtk.testing.check_plugin``; ``tk plugins``
    reports the same from the import it timed itself (``plugin_checks``)."""
    from torchtk.core.plugin_checks import cost_note, import_cost_in_fresh_process

    cost = import_cost_in_fresh_process(module)
    return cost_note(f"plugin module {module!r}", cost) if cost.slow else None
