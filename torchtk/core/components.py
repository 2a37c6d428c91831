"""What a component is: a catalog entry, its params model, and the kinds that exist."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base class for component params: unknown keys are errors, nothing is coerced.

    ``strict=True`` means the string ``"0.1"`` is not accepted where a number belongs.
    Use ``list[...]`` rather than ``tuple[...]`` for sequences, since specs come from JSON.
    ``defer_build``: a model's validator is built when it first validates or shows its
    schema, so importing the built-in plugins (``tk list``) does not build 60 of them.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, defer_build=True)


class NoParams(Params):
    """A component that takes no params."""


@dataclass(frozen=True)
class PathParam:
    """Marks a params field as a path to something the run reads: a data folder, a weights
    file. Use it as ``Annotated[str, PathParam()]`` (or :data:`InputPath`), also inside
    ``Optional[...]`` or ``list[...]``.

    A relative path written in a spec file is resolved against the spec file's folder when
    the spec is validated, one given with ``--set`` or in a dict or ``RunSpec`` against the
    current directory; the component then gets an absolute path, and ``spec.json`` keeps it
    (:mod:`torchtk.core.spec.paths`). ``names``: a regular expression for values that are
    names rather than paths (``"DEFAULT"`` for weights), which are kept as they are; write
    ``./DEFAULT`` for a file of that name. Paths the run writes (an output folder) are not
    marked: they stay relative to the current directory.
    """

    names: str | None = None

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        found = handler(schema)
        if found.get("type") == "string":
            found["format"] = "path"
        return found


InputPath = Annotated[str, PathParam()]  # a path the run reads, relative to the spec file


@dataclass(frozen=True)
class Kind:
    """One kind of component and the hook that builds it.

    ``context`` names the run objects passed to the hook as keyword arguments (never
    validated as params); the remaining keyword arguments of ``Registry.create`` are
    params.
    """

    name: str
    plural: str
    hook: str
    context: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("loss", "losses", "make_loss", ("model",)),
        Kind("scheduler", "schedulers", "make_scheduler", ("optimizer", "run")),
        Kind("freeze", "freeze", "freeze_policy"),
        Kind("precision", "precision", "precision_context", ("device",)),
        Kind("callback", "callbacks", "make_callback"),
        Kind("model", "models", "make_model"),
        Kind("dataset", "datasets", "make_dataset"),
        Kind("optimizer", "optimizers", "make_optimizer", ("parameters",)),
        Kind("metric", "metrics", "make_metric", ("classes",)),
        Kind("init", "init", "make_init"),
        Kind("transform", "transforms", "make_transform"),
    )
}


def kind_named(text: str) -> Kind | None:
    """The kind called ``text``, singular or plural (``loss`` or ``losses``)."""
    text = text.strip().lower()
    for kind in KINDS.values():
        if text in (kind.name, kind.plural):
            return kind
    return None


@dataclass(frozen=True)
class Component:
    """A catalog entry: what a plugin declares in ``register_components``.

    ``params`` is the pydantic model of the component's params, or a ``"module:attr"``
    string / zero-argument callable returning it, for models that are expensive to
    build (for example derived from a torch constructor): those are resolved only when
    the component is shown, validated or built, so ``tk list`` never pays for them.

    ``extras`` holds kind-specific declarations, such as a scheduler's
    ``{"interval": "epoch", "needs_metric": False}``.
    ``replaces=True`` lets a third-party component deliberately take over a built-in
    name; without it, two providers of one name are a reported conflict.
    """

    kind: str
    name: str
    summary: str
    params: Any = NoParams
    aliases: tuple[str, ...] = ()
    doc: str | Callable[[], str] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    replaces: bool = False
    # Filled in by the registry, never by the plugin:
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown component kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"component name {self.name!r} must be a non-empty word")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def params_model(self) -> type[BaseModel]:
        """The params model, imported or built on first use."""
        source = self.params
        if isinstance(source, str):
            source = load_object(source)
        elif callable(source) and not isinstance(source, type):
            source = source()
        if not (isinstance(source, type) and issubclass(source, BaseModel)):
            raise TypeError(f"{self.kind} {self.name!r}: params must be a pydantic model, got {source!r}")
        return source

    @property
    def description(self) -> str:
        """The long description: ``doc`` if given, else the params model's docstring."""
        doc = self.doc() if callable(self.doc) else self.doc
        if doc:
            return inspect.cleandoc(doc)
        model_doc = inspect.cleandoc(self.params_model.__doc__ or "")
        return "" if model_doc in (inspect.cleandoc(Params.__doc__), inspect.cleandoc(NoParams.__doc__)) else model_doc

    @property
    def provider(self) -> str:
        """Human-readable provenance: plugin, and distribution with version."""
        if self.distribution:
            return f"{self.plugin} ({self.distribution} {self.version})".strip()
        return self.plugin


def load_object(ref: str) -> Any:
    """Import ``"package.module:attr"`` (the fsspec/entry-point style reference)."""
    module_name, _, attr = ref.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
