"""``--set key.path=value``: changing raw spec data before it is validated, and naming
the option the user typed when a problem comes from it.

Overrides are applied to the raw data (a file's dict), so they are validated exactly
like the file's own values. A value is JSON when it parses as JSON (``3``, ``true``,
``[1, 2]``), else a string.
"""

from __future__ import annotations

import json
import re
from typing import Any

from torchtk.core.errors import SpecError, UserInputError, shorten
from torchtk.core.spec.limits import MAX_DEPTH
from torchtk.core.spec.models import COMPONENT_SLOTS, ONE_OR_MANY
from torchtk.core.spec.problems import UNKNOWN_KEY, format_loc, split_path

_PATH_SYNTAX = re.compile(r"^[A-Za-z_][\w-]*(\[\d+\]|\.[A-Za-z_][\w-]*|\.\d+)*$")
MAX_PATH_LENGTH = 500  # characters of a --set key path


def _json_kind(value: Any) -> str:
    """How JSON users call a value's type: ``a string``, ``a number``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _parse(assignment: str) -> tuple[str, list[str | int], Any]:
    """``key.path=value`` -> (path text, path parts, value)."""
    if "=" not in assignment:
        raise UserInputError(f"--set {shorten(repr(assignment))}: expected key.path=value, e.g. --set trainer.epochs=3")
    path_text, _, value_text = assignment.partition("=")
    path_text = path_text.strip()
    if len(path_text) > MAX_PATH_LENGTH:
        raise UserInputError(f"--set {shorten(path_text, 60)}=...: the key path is {len(path_text):,} characters "
                             f"long; at most {MAX_PATH_LENGTH} are allowed")
    if not _PATH_SYNTAX.match(path_text):
        raise UserInputError(f"--set {shorten(repr(assignment))}: {shorten(repr(path_text))} is not a key path; "
                             "write keys separated by dots and list indexes in brackets, e.g. loss[0].params.gamma")
    parts = split_path(path_text)
    if len(parts) > MAX_DEPTH:
        raise UserInputError(f"--set {shorten(path_text, 60)}=...: the key path has {len(parts):,} parts; a spec "
                             f"is at most {MAX_DEPTH} levels deep")
    try:
        value: Any = json.loads(value_text, parse_constant=_no_nan)
    except (json.JSONDecodeError, ValueError):
        value = value_text
    except RecursionError:
        raise UserInputError(f"--set {shorten(path_text, 60)}=...: the value is nested too deeply "
                             f"(a spec is at most {MAX_DEPTH} levels deep)") from None
    return path_text, parts, value


def _no_nan(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def apply_override(data: dict[str, Any], assignment: str) -> tuple[str | int, ...]:
    """Apply ``key.path=value`` to raw spec data; the value is JSON when it parses as JSON.

    Returns the normalised path, so validation errors there can be blamed on ``--set``.
    A component written as a bare name (``"loss": "mse"``) is expanded so its params
    (``loss[0].params.reduction``) or weight can be set.
    """
    path_text, parts, value = _parse(assignment)
    in_slot = parts[0] in COMPONENT_SLOTS
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if i == 1 and parts[0] in ONE_OR_MANY and isinstance(node, (str, dict)):
                node = data[parts[0]] = [node]  # "loss": "mse" is the one-element list ["mse"]
            if not isinstance(node, list) or part >= len(node):
                raise UserInputError(f"--set {path_text}: {format_loc(tuple(parts[: i + 1]))} does not exist in the spec")
            if last:
                node[part] = value
            else:
                if in_slot and i == 1 and isinstance(node[part], str):
                    node[part] = {"name": node[part]}
                node = node[part]
            continue
        if not isinstance(node, dict):
            parent = format_loc(tuple(parts[:i]))
            raise UserInputError(f"--set {path_text}: {parent} is {_json_kind(node)}, not an object")
        if last:
            node[part] = value
        else:
            if in_slot and i == 0 and isinstance(node.get(part), str):
                node[part] = {"name": node[part]}
            node = node.setdefault(part, {})
    if parts[0] in ONE_OR_MANY and len(parts) > 1 and isinstance(parts[1], str) \
            and not isinstance(data.get(parts[0]), list):
        return (parts[0], 0, *parts[1:])  # "loss": {...} is loss[0] once validated
    return tuple(parts)


def blame_overrides(error: SpecError, paths: list[tuple[Any, ...]], overrides: list[str] | None) -> SpecError:
    """Rewrite problems caused by ``--set`` so they name the option the user typed."""
    by_path = {format_loc(p): text for p, text in zip(paths, overrides or ())}
    problems = []
    for path, message in error.problems:
        if path in by_path:
            if message.startswith(UNKNOWN_KEY):
                message = "no such setting" + message[len(f"{UNKNOWN_KEY} {path.split('.')[-1]!r}"):]
            path = f"--set {by_path[path]}: {path}"
        problems.append((path, message))
    return SpecError(problems, error.source, error.positions)
