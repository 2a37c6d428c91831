"""Params models derived from a torch constructor's signature and docstring.

Used for the torch classes exposed one-to-one (``torch.nn`` losses, and later
optimizers and schedulers): types and defaults come from the signature, the
description of each field from the ``Args:`` section of the docstring.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Literal, Optional

from pydantic import Field, create_model

from torchtk import Params

DEPRECATED_ARGS = frozenset({"size_average", "reduce", "self", "device", "dtype"})


def describe_args(doc: str) -> dict[str, str]:
    """``{"weight": "a manual rescaling weight ..."}`` from a Google-style ``Args:`` block."""
    match = re.search(r"\n\s*Args:\s*\n(.*?)(\n\s*(Shape|Examples|Attributes|Note|Returns):|\Z)", doc or "", re.S)
    if not match:
        return {}
    found: dict[str, str] = {}
    current = None
    arg_indent = None
    for line in match.group(1).splitlines():
        indent = len(line) - len(line.lstrip())
        head = re.match(r"\s*(\w+)\s*(\([^)]*\))?\s*:\s*(.*)", line)
        if head and arg_indent in (None, indent):
            arg_indent = indent
            current = head.group(1)
            found[current] = head.group(3).strip()
        elif current and line.strip():
            found[current] += " " + line.strip()
    return {k: re.sub(r"\s+", " ", v.replace(":attr:", "").replace("`", "")) for k, v in found.items()}


def summary_of(cls: type) -> str:
    """The first paragraph of a class docstring, on one line."""
    first = (inspect.getdoc(cls) or cls.__name__).split("\n\n")[0]
    return re.sub(r"\s+", " ", first.replace("`", "")).strip()


def params_from_signature(
    cls: type,
    *,
    tensor_args: frozenset[str] = frozenset({"weight", "pos_weight"}),
    choices: dict[str, tuple[str, ...]] | None = None,
    skip: frozenset[str] = frozenset(),
) -> type[Params]:
    """A strict params model mirroring ``cls.__init__``.

    Tensor arguments become ``list[float] | None`` (JSON has no tensors); string
    arguments listed in ``choices`` become ``Literal`` types so bad values are caught
    at validation time rather than deep inside torch.
    """
    choices = choices or {}
    docs = describe_args(inspect.getdoc(cls) or "")
    fields: dict[str, Any] = {}
    for arg in inspect.signature(cls.__init__).parameters.values():
        if arg.name in DEPRECATED_ARGS or arg.name in skip or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        default = ... if arg.default is inspect.Parameter.empty else arg.default
        if arg.name in tensor_args:
            annotation: Any = Optional[list[float]]
        elif arg.name in choices:
            annotation = Literal[choices[arg.name]]  # type: ignore[valid-type]
        elif isinstance(default, bool):
            annotation = bool
        elif isinstance(default, float):
            annotation = float
        elif isinstance(default, int):
            annotation = int
        elif isinstance(default, str):
            annotation = str
        elif default is None or default is ...:
            annotation = Optional[float] if default is None else Any
        else:
            annotation = type(default)
        fields[arg.name] = (annotation, Field(default, description=docs.get(arg.name, "")))
    model = create_model(f"{cls.__name__}Params", __base__=Params, **fields)
    model.__doc__ = f"{summary_of(cls)}\n\nWraps {cls.__module__}.{cls.__name__}; its documentation has the formula."
    return model


def tensor_kwargs(params: Params, tensor_args: frozenset[str] = frozenset({"weight", "pos_weight"})) -> dict[str, Any]:
    """The params as constructor kwargs, with JSON lists turned into tensors."""
    import torch

    kwargs = params.model_dump()
    for name in tensor_args & kwargs.keys():
        if kwargs[name] is not None:
            kwargs[name] = torch.tensor(kwargs[name], dtype=torch.float32)
    return kwargs


def clean_description(text: str) -> str:
    """An argument's description without the class's trailing example and image."""
    text = re.split(r"\s(?:Example:|>>>|\.\. )", text, maxsplit=1)[0]
    return re.sub(r":math:", "", text).strip()


def params_for(cls: type, fields: dict[str, tuple[Any, dict[str, Any]]], *, doc: str | None = None) -> type[Params]:
    """A strict params model for ``cls`` with the types and bounds given in ``fields``.

    ``fields`` maps each exposed constructor argument to ``(annotation, Field kwargs)``;
    the default comes from the signature (a ``"default"`` key overrides it) and the
    description from the docstring's ``Args:`` block (a ``"description"`` key overrides
    it). An argument that is not in the signature is an error, so a torch upgrade that
    renames one fails loudly instead of silently dropping it.
    """
    signature = inspect.signature(cls.__init__).parameters
    docs = describe_args(inspect.getdoc(cls) or "")
    built: dict[str, Any] = {}
    for name, (annotation, options) in fields.items():
        if name not in signature:
            raise TypeError(f"{cls.__name__} takes no argument {name!r}")
        options = dict(options)
        default = signature[name].default
        default = options.pop("default", ... if default is inspect.Parameter.empty else default)
        description = options.pop("description", None) or clean_description(docs.get(name, ""))
        built[name] = (annotation, Field(default, description=description, **options))
    model = create_model(f"{cls.__name__}Params", __base__=Params, **built)
    model.__doc__ = doc or f"{summary_of(cls)}\n\nWraps {cls.__module__}.{cls.__name__}; its documentation has the formula."
    return model
