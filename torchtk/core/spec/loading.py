"""Reading a spec file (JSON or YAML, or a bundled example by name) into plain data,
together with the position of every value in it.

Every way a file can be unusable (missing, unreadable, not UTF-8, malformed, a key
written twice, ``NaN``) is a :class:`~torchtk.core.errors.UserInputError` that names
the file and, where the text has one, the line and column. The positions returned
with the data let the validation passes name ``file:line:column`` too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from torchtk.core.errors import UserInputError
from torchtk.core.spec.sourcemap import DuplicateKey, SourceMap, json_source_map, yaml_source_map

EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples"


def bundled_examples() -> dict[str, Path]:
    """Example name -> spec file shipped inside the package."""
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*.json"), key=lambda p: p.stem)}


def read_spec_file(source: str | Path) -> tuple[dict[str, Any], str]:
    """Parse a spec file (or bundled example name) into a dict; errors carry file:line:col."""
    data, label, _ = read_spec_source(source)
    return data, label


def read_spec_source(source: str | Path) -> tuple[dict[str, Any], str, SourceMap]:
    """Like :func:`read_spec_file`, and also where each value of the file is."""
    path = _find(source)
    text = _read_text(path)
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data, where = _parse_yaml(text, path)
        else:
            data, where = _parse_json(text, path)
    except RecursionError:
        raise UserInputError(f"{path}: malformed spec: nested too deeply") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a spec must be a JSON object, got {type(data).__name__}")
    return data, str(path), where


def _find(source: str | Path) -> Path:
    if not str(source).strip():
        raise UserInputError("SPEC is empty: give a spec file or a bundled example name (see tk examples)")
    path = Path(source)
    if path.exists():
        return path
    examples = bundled_examples()
    if str(source) in examples:
        return examples[str(source)]
    hint = f" Bundled examples: {', '.join(examples)}." if examples else ""
    raise UserInputError(f"{source}: no such spec file or bundled example.{hint}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read spec file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserInputError(f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start}); specs are UTF-8 JSON or YAML") from None


def _parse_json(text: str, path: Path) -> tuple[Any, SourceMap]:
    try:
        data = json.loads(text, parse_constant=_no_nan)
        return data, json_source_map(text)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from exc
    except DuplicateKey as exc:
        line, column = exc.position
        raise UserInputError(f"{path}:{line}:{column}: malformed JSON: {exc}") from None
    except ValueError as exc:
        raise UserInputError(f"{path}: malformed JSON: {exc}") from exc


def _parse_yaml(text: str, path: Path) -> tuple[Any, SourceMap]:
    import yaml

    loader = _spec_yaml_loader()(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return data, yaml_source_map(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserInputError(f"{where}: malformed YAML: {exc.problem}") from exc
    finally:
        loader.dispose()


def _spec_yaml_loader() -> Any:
    """A safe YAML loader that rejects duplicate keys (naming the second one) and reads
    ``1e-3`` as a number (YAML 1.1 would read it as a string)."""
    import yaml

    class SpecLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *defaults": merged keys may repeat explicit ones, which win
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    SpecLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
        list("-+0123456789."),
    )
    return SpecLoader


def _no_nan(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")
