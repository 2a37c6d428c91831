"""Reading a spec file (JSON or YAML, or a bundled example by name) into plain data,
together with the position of every value in it.

Every way a file can be unusable (missing, unreadable, a directory, a FIFO or device, a
symlink loop, larger than :data:`MAX_SPEC_BYTES`, empty, binary, not UTF-8, malformed, a
key written twice, ``NaN``, not an object) is a :class:`~torchtk.core.errors.UserInputError`
that names the file and, where the text has one, the line and column. The path is checked
with ``os.stat`` before anything is opened, so a FIFO or ``/dev/zero`` never blocks. The positions returned
with the data let the validation passes name ``file:line:column`` too.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from torchtk.core.errors import UserInputError
from torchtk.core.spec.sourcemap import DuplicateKey, SourceMap, json_source_map, yaml_source_map

EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples"
MAX_SPEC_BYTES = 10 * 1024 * 1024  # a spec is a page of settings: 10 MB is far more than any real one


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
        raise UserInputError(f"{path}: a spec must be a JSON object ({{...}}), got {_kind_of(data)}")
    return data, str(path), where


def _find(source: str | Path) -> Path:
    """The spec file ``source`` names (or the bundled example), checked with ``os.stat``
    before it is opened, so a FIFO, a device or a directory is refused without blocking."""
    if not str(source).strip():
        raise UserInputError("SPEC is empty: give a spec file or a bundled example name (see tk examples)")
    path = Path(source)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        examples = bundled_examples()
        if str(source) in examples:
            return examples[str(source)]
        if os.path.islink(path):
            raise UserInputError(f"{_shown(source)}: a symbolic link to {os.readlink(path)!r}, which does not "
                                 "exist") from None
        hint = f" Bundled examples: {', '.join(examples)}." if examples else ""
        raise UserInputError(f"{_shown(source)}: no such spec file or bundled example.{hint}") from None
    except OSError as exc:  # ELOOP (a symlink loop), ENAMETOOLONG, EACCES on a parent, ...
        reason = "a loop of symbolic links" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise UserInputError(f"{_shown(source)}: cannot open the spec file: {reason}") from None
    except ValueError as exc:  # an embedded NUL byte
        raise UserInputError(f"{_shown(source)}: not a valid file name: {exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserInputError(f"{path}: is a directory; give a spec file (JSON or YAML) inside it")
    if not stat.S_ISREG(info.st_mode):
        raise UserInputError(f"{path}: is a {_file_kind(info.st_mode)}, not a regular file; give a spec file "
                             "(JSON or YAML)")
    if info.st_size > MAX_SPEC_BYTES:
        raise UserInputError(f"{path}: {info.st_size / 1e6:.1f} MB is too large for a spec file (the limit is "
                             f"{MAX_SPEC_BYTES // (1024 * 1024)} MB)")
    return path


def _kind_of(data: Any) -> str:
    """A parsed document's type, as JSON and YAML users call it."""
    if data is None:
        return "an empty document"
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(data), type(data).__name__)


def _shown(source: str | Path, limit: int = 200) -> str:
    """A file name as shown in a message: a very long one is cut in the middle."""
    text = str(source)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2:]} ({len(text)} characters)"


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)  # a file that grew since it was checked is still bounded
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read spec file: {exc.strerror or exc}") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise UserInputError(f"{path}: too large for a spec file (the limit is "
                             f"{MAX_SPEC_BYTES // (1024 * 1024)} MB)")
    if not data.strip():
        raise UserInputError(f"{path}: the file is empty; a spec is a JSON or YAML object such as "
                             '{"model": ..., "data": ..., "loss": ...} (see tk examples)')
    if b"\x00" in data:
        offset = data.index(b"\x00")
        line = data[:offset].count(b"\n") + 1
        raise UserInputError(f"{path}:{line}: a binary file (a NUL byte at offset {offset}), not a JSON or "
                             "YAML spec")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
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
