"""Where each value of a spec file is written, so a validation problem can name its
``file:line:column`` and not only its spec path.

The stdlib ``json`` parser gives no positions, so :func:`json_source_map` rescans the
(already parsed, hence valid) text with a small recursive scanner that records the
offset of every value and key; it also finds a key written twice in one object, and
reports the second one. For YAML, :func:`yaml_source_map` walks the node tree PyYAML
composes, whose nodes carry start marks.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from json.decoder import scanstring
from typing import Any, Sequence

Position = tuple[int, int]  # line and column, both counted from 1
DataPath = tuple[Any, ...]  # keys and list indexes, e.g. ("loss", 0, "params", "gamma")

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_YAML_MERGE = "tag:yaml.org,2002:merge"
YAML_NODE_BUDGET = 20_000  # aliases may repeat a subtree many times; past this, paths fall back to ancestors


@dataclass
class SourceMap:
    """Data path -> position of the value there, and of the key that names it."""

    values: dict[DataPath, Position] = field(default_factory=dict)
    keys: dict[DataPath, Position] = field(default_factory=dict)

    def find(self, path: Sequence[Any], key: bool = False) -> Position | None:
        """The position of the key at ``path`` (``key=True``, when there is one) or of its
        value; a path the file does not contain (a missing key, a default) falls back to
        the nearest enclosing value that it does."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path)


class DuplicateKey(ValueError):
    """A key written twice in one object; ``position`` is the second one's."""

    def __init__(self, key: str, position: Position) -> None:
        self.key, self.position = key, position
        super().__init__(f"the key {key!r} appears twice in one object")


def json_source_map(text: str) -> SourceMap:
    """Positions of every value and key in ``text``, which must be valid JSON (parse it
    with ``json.loads`` first: that gives the syntax errors). Raises :class:`DuplicateKey`."""
    return _JsonScanner(text).run()


class _JsonScanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0] + [match.end() for match in re.finditer("\n", text)]
        self.map = SourceMap()

    def run(self) -> SourceMap:
        self.value(0, ())
        return self.map

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def skip(self, index: int) -> int:
        return _WHITESPACE.match(self.text, index).end()  # type: ignore[union-attr]

    def value(self, index: int, path: DataPath) -> int:
        """Record the value starting at (or after whitespace from) ``index``; return the index after it."""
        index = self.skip(index)
        self.map.values[path] = self.position(index)
        char = self.text[index]
        if char == "{":
            return self.object(index + 1, path)
        if char == "[":
            return self.array(index + 1, path)
        if char == '"':
            return scanstring(self.text, index + 1)[1]
        return _SCALAR.match(self.text, index).end()  # type: ignore[union-attr]

    def object(self, index: int, path: DataPath) -> int:
        index, seen = self.skip(index), set()
        if self.text[index] == "}":
            return index + 1
        while True:
            start = self.skip(index)
            key, index = scanstring(self.text, start + 1)
            if key in seen:
                raise DuplicateKey(key, self.position(start))
            seen.add(key)
            self.map.keys[(*path, key)] = self.position(start)
            index = self.value(self.skip(index) + 1, (*path, key))  # after the ':'
            index = self.skip(index)
            if self.text[index] == "}":
                return index + 1
            index += 1  # the ','

    def array(self, index: int, path: DataPath) -> int:
        index = self.skip(index)
        if self.text[index] == "]":
            return index + 1
        item = 0
        while True:
            index = self.skip(self.value(index, (*path, item)))
            if self.text[index] == "]":
                return index + 1
            index, item = index + 1, item + 1


def yaml_source_map(node: Any) -> SourceMap:
    """Positions of every value and key under a composed YAML node (``None``: empty document).

    Merge keys (``<<: *defaults``) map the merged keys at the merging mapping's path;
    keys written explicitly there win, as they do in the data.
    """
    walker = _YamlWalker()
    if node is not None:
        walker.node(node, (), weak=False)
    return walker.map


class _YamlWalker:
    def __init__(self) -> None:
        self.map = SourceMap()
        self.budget = YAML_NODE_BUDGET

    def record(self, table: dict[DataPath, Position], path: DataPath, mark: Any, weak: bool) -> None:
        if not (weak and path in table):
            table[path] = (mark.line + 1, mark.column + 1)

    def node(self, node: Any, path: DataPath, weak: bool) -> None:
        import yaml

        self.budget -= 1
        if self.budget < 0:
            return
        self.record(self.map.values, path, node.start_mark, weak)
        if isinstance(node, yaml.MappingNode):
            self.mapping(node, path, weak)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.node(item, (*path, index), weak)

    def mapping(self, node: Any, path: DataPath, weak: bool) -> None:
        import yaml

        merged = []
        for key_node, value_node in node.value:
            if key_node.tag == _YAML_MERGE:
                merged += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            elif isinstance(key_node, yaml.ScalarNode):
                self.record(self.map.keys, (*path, key_node.value), key_node.start_mark, weak)
                self.node(value_node, (*path, key_node.value), weak)
        for source in merged:  # the first merged mapping wins over later ones, explicit keys over all
            if isinstance(source, yaml.MappingNode):
                self.mapping(source, path, weak=True)
