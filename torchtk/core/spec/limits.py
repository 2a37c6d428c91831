"""What a spec's raw data may hold before it is validated, and how much of a value a
message repeats.

A spec is JSON data: objects with string keys, lists, strings, finite numbers, booleans
and null, at most :data:`MAX_DEPTH` levels deep. :func:`data_problems` checks that with
one iterative walk (no recursion, so no ``RecursionError`` on hostile input), whatever
the source: a JSON or YAML file, a dict, or ``--set`` values. A non-finite number
(JSON ``1e999``, YAML ``.inf`` or ``.nan``, ``float("nan")`` in a dict) is refused at
its spec path; no field takes one (a param that means infinity takes the string
``"inf"``, as torch's norm types do).
"""

from __future__ import annotations

import math
from typing import Any

from torchtk.core.spec.problems import echo, format_loc

MAX_DEPTH = 32  # levels of objects and lists; the bundled specs use 6, nested schedulers about 3 per level
MAX_YAML_NODES = 100_000  # values a YAML file may expand to through aliases (a spec has a few hundred)
_SCALARS = (int, bool, type(None))  # exactly these types: nothing to check
_KIND = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object",
         type(None): "null"}


def data_problems(data: Any, limit: int = MAX_DEPTH) -> list[tuple[tuple[Any, ...], str]]:
    """``(data path, message)`` for every value that JSON cannot hold or that is nested
    deeper than ``limit``; an empty list when the data is fine.

    A list or object reached twice (a YAML alias, a dict shared in Python) is walked
    again only where it sits deeper than before, so shared and even cyclic data cost at
    most ``limit`` walks of each container. Scalars are checked in place (a path is made
    only for a problem), so a list of millions of numbers costs one pass."""
    isfinite = math.isfinite
    problems: list[tuple[tuple[Any, ...], str]] = []
    walked_at: dict[int, int] = {}  # id of a list or object -> the deepest level it was walked at
    if not isinstance(data, (dict, list)):
        message = _scalar_problem(data)
        return [((), message)] if message else []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, container = stack.pop()
        if len(path) >= limit:
            problems.append((path, f"nested deeper than {limit} levels of objects and lists"))
            continue
        if walked_at.get(id(container), -1) >= len(path):
            continue
        walked_at[id(container)] = len(path)
        is_object = isinstance(container, dict)
        for key, value in container.items() if is_object else enumerate(container):
            if is_object and not isinstance(key, str):
                problems.append((path, f"the key {echo(key)} is {_kind(key)}; keys are strings (quote it)"))
            elif is_object and not (key.isascii() or _unicode(key)):
                problems.append((path, f"the key {echo(key)} is not valid unicode (it holds a lone surrogate)"))
            elif type(value) in _SCALARS or (type(value) is float and isfinite(value)) or (
                    type(value) is str and (value.isascii() or _unicode(value))):
                continue
            elif isinstance(value, (dict, list)):
                stack.append(((*path, key), value))
            else:
                message = _scalar_problem(value)
                if message:
                    problems.append(((*path, key), message))
    return sorted(set(problems), key=lambda problem: (format_loc(problem[0]), problem[1]))


def _scalar_problem(value: Any) -> str | None:
    """Why a value that is not a plain JSON scalar cannot be in a spec (None: it can)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        got = "NaN" if math.isnan(value) else ("-" if value < 0 else "") + "infinity"
        return f"not a finite number (got {got}); give a finite number"
    if isinstance(value, str):
        return None if _unicode(value) else "not valid unicode: the string holds a lone surrogate (such as \\ud800)"
    if value is None or isinstance(value, int):  # subclasses: an IntEnum
        return None
    return f"{_kind(value)} is not a JSON value; give a string, number, boolean, null, list or object"


def _unicode(text: str) -> bool:
    """Whether ``text`` is valid unicode: JSON's ``"\\ud800"`` decodes to a lone surrogate,
    which no file, terminal or pydantic string field can take."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _kind(value: Any) -> str:
    """How a JSON user calls the value's type; YAML-only types by their YAML names."""
    if type(value) in _KIND:
        return _KIND[type(value)]
    names = {"date": "a YAML date", "datetime": "a YAML timestamp", "bytes": "YAML binary data",
             "set": "a YAML set", "tuple": "a tuple"}
    return names.get(type(value).__name__, f"a {type(value).__name__}")

