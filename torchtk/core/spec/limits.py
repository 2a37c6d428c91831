"""What a spec's raw data may hold before it is validated, and how much of a value a
message repeats.

A spec is JSON data: objects with string keys, lists, strings, finite numbers, booleans
and null, at most :data:`MAX_DEPTH` levels deep. :func:`data_problems` checks that with
one iterative walk (no recursion, so no ``RecursionError`` on hostile input), whatever
the source: a JSON or YAML file, a dict, or ``--set`` values. A non-finite number
(JSON ``1e999``, YAML ``.inf`` or ``.nan``, ``float("nan")`` in a dict) is refused at
its spec path; no field takes one (``grad_clip``'s ``norm_type`` takes the string
``"inf"`` for the max norm, as torch does).
"""

from __future__ import annotations

import math
from typing import Any

from torchtk.core.spec.problems import echo, format_loc

MAX_DEPTH = 32  # levels of objects and lists; the bundled specs use 6, nested schedulers about 3 per level
MAX_YAML_NODES = 100_000  # values a YAML file may expand to through aliases (a spec has a few hundred)
_KIND = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object",
         type(None): "null"}


def data_problems(data: Any, limit: int = MAX_DEPTH) -> list[tuple[tuple[Any, ...], str]]:
    """``(data path, message)`` for every value that JSON cannot hold or that is nested
    deeper than ``limit``; an empty list when the data is fine.

    A list or object reached twice (a YAML alias, a dict shared in Python) is walked
    again only where it sits deeper than before, so shared and even cyclic data cost at
    most ``limit`` walks of each container."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    walked_at: dict[int, int] = {}  # id of a list or object -> the deepest level it was walked at
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (dict, list)):
            if len(path) >= limit:
                problems.append((path, f"nested deeper than {limit} levels of objects and lists"))
            elif walked_at.get(id(value), -1) < len(path):
                walked_at[id(value)] = len(path)
                stack.extend(_children(path, value, problems))
        elif isinstance(value, float):
            if not math.isfinite(value):
                got = "NaN" if math.isnan(value) else ("-" if value < 0 else "") + "infinity"
                problems.append((path, f"not a finite number (got {got}); give a finite number"))
        elif value is not None and not isinstance(value, (str, int)):
            problems.append((path, f"{_kind(value)} is not a JSON value; give a string, number, boolean, "
                                          "null, list or object"))
    return sorted(set(problems), key=lambda problem: (format_loc(problem[0]), problem[1]))


def _children(path: tuple[Any, ...], value: Any,
              problems: list[tuple[tuple[Any, ...], str]]) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, list):
        return [((*path, index), item) for index, item in enumerate(value)]
    children = []
    for key, item in value.items():
        if isinstance(key, str):
            children.append(((*path, key), item))
        else:
            problems.append((path, f"the key {echo(key)} is {_kind(key)}; keys are strings (quote it)"))
    return children


def _kind(value: Any) -> str:
    """How a JSON user calls the value's type; YAML-only types by their YAML names."""
    if type(value) in _KIND:
        return _KIND[type(value)]
    names = {"date": "a YAML date", "datetime": "a YAML timestamp", "bytes": "YAML binary data",
             "set": "a YAML set", "tuple": "a tuple"}
    return names.get(type(value).__name__, f"a {type(value).__name__}")

