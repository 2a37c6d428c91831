"""Reading a spec file (JSON or YAML, or a bundled example by name) into plain data,
together with the position of every value in it.

Every way a file can be unusable (missing, unreadable, a directory, a FIFO or device, a
symlink loop, larger than :data:`MAX_SPEC_BYTES`, empty, binary, not UTF-8, malformed, a
key written twice, ``NaN``, not an object) is a :class:`~torchtk.core.errors.UserInputError`
that names the file and, where the text has one, the line and column. The path is checked
with ``os.stat`` before anything is opened, so a FIFO or ``/dev/zero`` never blocks. The positions returned
with the data let the validation passes name ``file:line:column`` too.

YAML aliases are bounded while the file is composed: a file whose aliases expand to
more than :data:`~torchtk.core.spec.limits.MAX_YAML_NODES` values (an "alias bomb"),
an anchor used inside itself, a key that is a list or mapping, or nesting deeper than
:data:`~torchtk.core.spec.limits.MAX_DEPTH` is refused at its line and column, before
anything expands it.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from torchtk.core.errors import UserInputError, shorten
from torchtk.core.spec.limits import MAX_DEPTH, MAX_YAML_NODES
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
        raise UserInputError(f"{path}: malformed spec: nested too deeply (a spec is at most {MAX_DEPTH} levels "
                             "of objects and lists)") from None
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
        data = json.loads(text, parse_constant=_no_nan, parse_int=functools.partial(_int, text, path))
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

    loader = None
    try:
        loader = _spec_yaml_loader()(text)  # the reader refuses control characters here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return data, yaml_source_map(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserInputError(f"{where}: malformed YAML: {shorten(str(exc.problem))}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise UserInputError(f"{path}:{line}:{column}: malformed YAML: the character {character!r} is not "
                             "allowed (control characters cannot appear in YAML, even quoted; write \\x escapes "
                             "in a double-quoted string)") from None
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: malformed YAML: {shorten(str(exc))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _spec_yaml_loader() -> Any:
    """A safe YAML loader that rejects duplicate keys (naming the second one) and keys
    that are lists or mappings, bounds what aliases expand to (:func:`_bounded_composer`)
    and reads ``1e-3`` as a number (YAML 1.1 would read it as a string)."""
    import yaml

    class SpecLoader(_bounded_composer(), yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *defaults": merged keys may repeat explicit ones, which win
                if not isinstance(key_node, yaml.ScalarNode):
                    raise yaml.constructor.ConstructorError(
                        None, None, "a key must be a string, not a list or mapping", key_node.start_mark)
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"a key must be a string, not {type(key).__name__}", key_node.start_mark)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {shorten(repr(key))} appears twice in one mapping", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    def construct_int(loader: Any, node: Any) -> Any:
        try:
            return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise yaml.constructor.ConstructorError(
                None, None, f"the integer {shorten(node.value, 20)} has too many digits", node.start_mark) from None

    SpecLoader.add_constructor("tag:yaml.org,2002:int", construct_int)
    SpecLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
        list("-+0123456789."),
    )
    return SpecLoader


def _bounded_composer() -> type:
    """A YAML composer that counts the values the document expands to (an alias counts
    all the values under its anchor) and its depth, and refuses an alias to a node that
    is still being composed (the node would contain itself)."""
    import yaml
    from yaml.composer import ComposerError

    class BoundedComposer(yaml.composer.Composer):
        def compose_document(self) -> Any:
            self.expanded, self.depth, self.sizes, self.open_anchors = 0, 0, {}, set()
            return super().compose_document()

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in self.open_anchors:
                    raise ComposerError(None, None, f"the alias *{shorten(event.anchor, 60)} is used inside its own "
                                        "anchor, so the value would contain itself", event.start_mark)
                self.count(self.sizes.get(event.anchor, 1), event)
                return super().compose_node(parent, index)
            self.count(1, event)
            if self.depth >= MAX_DEPTH and isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels of mappings and lists",
                                    event.start_mark)
            anchor, before = event.anchor, self.expanded
            if anchor is not None:
                self.open_anchors.add(anchor)
            self.depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
                self.open_anchors.discard(anchor)
            if anchor is not None:
                self.sizes[anchor] = self.expanded - before + 1
            return node

        def count(self, values: int, event: Any) -> None:
            self.expanded += values
            if self.expanded > MAX_YAML_NODES:
                raise ComposerError(None, None, f"the aliases expand the document to more than {MAX_YAML_NODES:,} "
                                    "values (an alias bomb?); write the spec out instead", event.start_mark)

    return BoundedComposer


def _int(text: str, path: Path, digits: str) -> int:
    """An integer of the JSON text; one with more digits than Python converts is an
    input error at its line and column."""
    try:
        return int(digits)
    except ValueError:
        offset = text.find(digits)
        line, column = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
        raise UserInputError(f"{path}:{line}:{column}: malformed JSON: the integer {shorten(digits, 20)} has too "
                             "many digits") from None


def _no_nan(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")
