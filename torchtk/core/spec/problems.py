"""Spec paths and readable problems: the one place pydantic's errors become the
``(spec path, message)`` pairs a :class:`~torchtk.core.errors.SpecError` carries.

Both validation passes and ``--set`` speak in spec paths (``loss[0].params.gamma``);
this module turns pydantic locations into them and back into parts, and words each
problem for a JSON user: no Python class names, "unknown key" with the valid keys,
"required, but missing", and at most :data:`~torchtk.core.errors.ECHO_LIMIT` characters
of the offending value (:func:`echo`), so a 200 MB value of the wrong type costs a short
message and no second copy.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from torchtk.core.errors import ECHO_LIMIT, shorten

MISSING = "required, but missing"
UNKNOWN_KEY = "unknown key"

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


# what pydantic adds to a location that is not a key: a validator ("function-after[_check(), ...]")
# or the member of a union ("list[float]"); a key of the spec named "function-x" is a key
_PYDANTIC_PART = re.compile(r"^(function-(after|before|wrap|plain)(\[.*\])?|(list|dict|tuple)\[.*\])$", re.DOTALL)
_PLAIN_KEY = re.compile(r"^[^.\[\]\s\"]+$")


def format_loc(loc: tuple[Any, ...]) -> str:
    """``("loss", 0, "params", "gamma")`` -> ``loss[0].params.gamma``; a key that is empty or
    holds a dot, a bracket, a quote or white space is written ``["a.b"]``, so every key shows."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and _PYDANTIC_PART.match(part):
            continue
        elif not _PLAIN_KEY.match(str(part)):
            text += f"[{json.dumps(str(part))}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def split_path(path: str) -> list[str | int]:
    """``loss[0].params.gamma`` -> ``["loss", 0, "params", "gamma"]`` (``a.0`` is index 0 too)."""
    parts: list[str | int] = []
    for name, index in _PATH_PART.findall(path):
        if index:
            parts.append(int(index))
        elif name.isascii() and name.isdigit():  # "¹".isdigit() is true, but no index
            parts.append(int(name))
        else:
            parts.append(name)
    return parts


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the object at ``loc`` inside ``model`` (for "unknown key" hints)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        current = _inner_model(current.model_fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]  # "import", not import_
    return []


def _inner_model(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _plain(message: str) -> str:
    """Pydantic's wording without Python internals: no "Value error," prefix or class names."""
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    message = re.sub(r"Input should be a valid dictionary or instance of \w+", "Input should be an object", message)
    return message.replace("valid dictionary", "object").replace("NoneType", "null")


def problems_from(error: ValidationError, prefix: tuple[Any, ...], model: type[BaseModel]) -> list[tuple[str, str]]:
    """Readable ``(spec path, message)`` pairs from a pydantic error."""
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if loc and isinstance(loc[-1], str) and _PYDANTIC_PART.match(loc[-1]):
            loc = loc[:-1]
        path = format_loc(prefix + loc)
        if item["type"] == "extra_forbidden" and loc:
            valid = _fields_at(model, loc[:-1])
            message = f"{UNKNOWN_KEY} {loc[-1]!r}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
        elif item["type"] == "missing":
            message = MISSING
        else:
            message = f"{_plain(item['msg'])} (got {echo(item.get('input'))})"
        problems.append((path, message))
    return problems


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``value`` as JSON (``repr`` for what JSON cannot hold), cut after ``limit``
    characters with ``... (N characters)``. The encoder is consumed lazily, so a huge
    value is never written out in full; past a million characters N is a lower bound."""
    chunks: list[str] = []
    size = 0
    try:
        for chunk in json.JSONEncoder(default=repr).iterencode(value):
            if size < limit:
                chunks.append(chunk)
            size += len(chunk)
            if size > 1_000_000:
                break
    except (ValueError, RecursionError):  # a list that contains itself, a value nested too deeply
        return shorten(f"a {type(value).__name__} that JSON cannot write", limit)
    text = "".join(chunks)
    if size <= limit:
        return text
    count = "more than 1,000,000" if size > 1_000_000 else f"{size:,}"
    return f"{text[:limit]}... ({count} characters)"

