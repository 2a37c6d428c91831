"""Hypothesis strategies for hostile specs: mutations of the bundled examples, components
drawn from ``tk schema``, spec files as JSON and YAML text (aliases, bombs, duplicate
keys, control characters), and ``--set`` options.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
from typing import Any

from hypothesis import strategies as st

from torchtk.core.spec import bundled_examples, format_loc

BASES: dict[str, dict[str, Any]] = {name: json.loads(path.read_text()) for name, path in bundled_examples().items()}
for _base in BASES.values():
    _base.setdefault("trainer", {})["output_dir"] = "fuzz-runs-never-written"

# numbers at the edges: huge integers (beyond int64 and float), tiny and huge floats, non-finite ones
EDGE_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**400, -(10**400), 1e308, -1e308,
                                5e-324, 1e-320, float("nan"), float("inf"), float("-inf"), 0.5, -0.0, True, False])
TEXT = st.text(st.characters(codec=None), max_size=30)  # any code point: control characters, surrogates, emoji
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT, EDGE_NUMBERS,
                    st.sampled_from(["", "0.01", "1e999", "NaN", "cuda:99999999999999999999999", "auto", "mse",
                                     "step", "focal", "adam", "x" * 5000, ".:x", "os:system", "-1"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


PLAUSIBLE_NAMES = ["mse", "cross_entropy", "focal", "dice", "sgd", "adamw", "cosine", "step", "warmup", "lambda",
                   "fp16", "bf16", "ema", "early_stopping", "nan_guard", "f1", "auroc", "shapes", "rings", "unet",
                   "resnet18", "freeze_backbone", "kaiming_normal", "normalize", "val_loss", "val_accuracy", "max",
                   "cpu", "cuda:0", "epoch", "0.95 ** epoch", "min(1, (epoch + 1) / 5)"]


def paths(data: Any, depth: int = 12, most: int = 2_000) -> list[tuple[Any, ...]]:
    """Paths to values in ``data`` (the root included), breadth first, at most ``depth``
    levels down and ``most`` of them (a mutation may have nested a value 3000 deep)."""
    found, queue = [], collections.deque([((), data)])
    while queue and len(found) < most:
        path, value = queue.popleft()
        found.append(path)
        if len(path) < depth and isinstance(value, dict):
            queue.extend(((*path, key), item) for key, item in value.items())
        elif len(path) < depth and isinstance(value, list):
            queue.extend(((*path, index), item) for index, item in enumerate(value[:50]))
    return found


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _wrap(value: Any, depth: int, kind: str) -> Any:
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@st.composite
def mutation(draw: Any, data: Any) -> None:
    """Change ``data`` in place at one path: replace, delete, add a key, nest deeply,
    swap a type, an edge number, a long or strange string, or share a subtree."""
    path = draw(st.sampled_from(paths(data)))
    if not path:
        path = (draw(st.sampled_from(sorted(data))),) if data else ()
    if not path:
        return
    parent, key = _get(data, path[:-1]), path[-1]
    value = parent[key]
    kind = draw(st.sampled_from(["plausible", "plausible", "replace", "delete", "add", "deep", "swap", "edge", "text",
                                 "share", "wrap"]))
    if kind == "plausible":  # a value of the same type, so that more specs stay valid and reach deeper checks
        parent[key] = draw(st.booleans() if isinstance(value, bool) else
                           st.integers(-2, 100) if isinstance(value, int) else
                           st.floats(-1, 2) if isinstance(value, float) else
                           st.sampled_from(PLAUSIBLE_NAMES) if isinstance(value, str) else JSON_VALUES)
    elif kind == "delete":
        del parent[key]
    elif kind == "add":
        target = value if isinstance(value, dict) else parent if isinstance(parent, dict) else None
        if target is not None:
            target[draw(TEXT | st.sampled_from(["params", "name", "weight", "interval", "import", "extra"]))] = \
                draw(JSON_VALUES)
    elif kind == "deep":
        parent[key] = _wrap(value, draw(st.sampled_from([1, 5, 31, 32, 33, 100, 1000, 3000])),
                            draw(st.sampled_from(["list", "dict"])))
    elif kind == "swap":
        parent[key] = (str(value) if isinstance(value, (int, float)) else
                       [value] if isinstance(value, (str, dict)) else
                       (value[0] if value else None) if isinstance(value, list) else draw(TEXT))
    elif kind == "edge":
        parent[key] = draw(EDGE_NUMBERS)
    elif kind == "text":
        parent[key] = draw(TEXT | st.sampled_from(["x" * 100_000, "\x00", "\x07bell", "é" * 1000, "\ud800"]))
    elif kind == "share":  # the same object twice: YAML writes it as an anchor and an alias
        other = draw(st.sampled_from(paths(data)[1:] or [(key,)]))  # not the root: no copy of a 3000-deep nest
        parent[key] = _get(data, other) if other[:-1] != path[:-1] or other[-1] != key else value
    elif kind == "wrap":
        parent[key] = [value, draw(JSON_VALUES)]
    else:
        parent[key] = draw(JSON_VALUES)


@st.composite
def mutated_specs(draw: Any) -> dict[str, Any]:
    """A bundled example with one to four mutations."""
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 4))):
        draw(mutation(data))
    return data


# -- from the JSON Schema of tk schema ---------------------------------------------------------

SLOT_OF_KIND = {"model": "model", "init": "init", "dataset": "data", "transform": "data.transforms.train",
                "loss": "loss", "optimizer": "optimizer", "scheduler": "scheduler", "freeze": "freeze",
                "precision": "precision", "callback": "callbacks", "metric": "metrics"}
LIST_SLOTS = {"init", "data.transforms.train", "loss", "scheduler", "freeze", "callbacks", "metrics"}


@functools.lru_cache(maxsize=1)
def _alternatives() -> list[tuple[str, str, dict[str, Any]]]:
    """``(kind, title, schema)`` for every component alternative of ``tk schema``."""
    from torchtk.core.spec import run_spec_schema

    from torchtk.core.spec.schema import component_branches

    schema = run_spec_schema()
    defs = schema["$defs"]
    found = []
    for kind, slot in SLOT_OF_KIND.items():
        by_import = [defs[f"{kind}_ref"]["anyOf"][1]["then"]]  # the component given by import path
        for alternative in component_branches(schema, kind) + by_import:
            alternative = copy.deepcopy(alternative)
            alternative.get("properties", {}).pop("transforms", None)  # fuzzed through the transform slot
            found.append((kind, alternative.get("title", kind), {"$defs": defs, **alternative}))
    return found


@functools.lru_cache(maxsize=None)
def _from_schema(index: int) -> Any:
    from hypothesis_jsonschema import from_schema

    return from_schema(_alternatives()[index][2])


@st.composite
def schema_specs(draw: Any) -> dict[str, Any]:
    """A bundled example with one component replaced by one drawn from its JSON Schema
    (any installed component of any kind, params as the schema allows)."""
    index = draw(st.integers(0, len(_alternatives()) - 1))
    kind = _alternatives()[index][0]
    ref = draw(_from_schema(index))
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    slot = SLOT_OF_KIND[kind]
    if slot == "data.transforms.train":
        data["data"].setdefault("transforms", {})["train"] = [ref]
    elif slot in LIST_SLOTS:
        data[slot] = [ref]
    elif slot == "data":
        data["data"] = ref
    else:
        data[slot] = ref
    return data


# -- spec files as text ------------------------------------------------------------------------


def alias_bomb(levels: int, width: int) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before: ``width ** levels`` values."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@st.composite
def spec_texts(draw: Any) -> tuple[str, str]:
    """``(suffix, text)``: a (mutated) spec as JSON or YAML, possibly cut, spliced, given
    duplicate keys, control characters or an alias bomb."""
    import yaml

    data = draw(mutated_specs() | st.sampled_from(sorted(BASES)).map(lambda name: copy.deepcopy(BASES[name])))
    suffix = draw(st.sampled_from([".json", ".yaml"]))
    try:
        text = (json.dumps(data) if suffix == ".json" else
                yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False))
    except (ValueError, RecursionError, UnicodeEncodeError, yaml.YAMLError):
        text = json.dumps(data, default=str, check_circular=False) if not _cyclic(data) else "[]"
    edit = draw(st.sampled_from(["none", "none", "cut", "insert", "duplicate", "bomb", "nan", "big", "recursive"]))
    if edit == "cut" and text:
        text = text[: draw(st.integers(0, len(text)))]
    elif edit == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(TEXT | st.sampled_from(["\x00", "\x1b", "\ufeff", "&a", "*a", "<<: *a", "? [1]\n: 1",
                                                        "!!python/object:os.system", "{", "]"])) + text[at:]
    elif edit == "duplicate":
        text = (text.replace('"seed": ', '"seed": 1, "seed": ', 1) if suffix == ".json"
                else text + "\nseed: 1\nseed: 2\n")
    elif edit == "bomb":
        suffix, text = ".yaml", text_with_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 12)))
    elif edit == "nan":
        text = text.replace("0.01", draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", ".nan", ".inf"])))
    elif edit == "big":
        text = text.replace("0.01", draw(st.sampled_from(["1" * 5000, "0x" + "f" * 300, "1e-99999", "-0"])))
    elif edit == "recursive":
        suffix, text = ".yaml", "name: &a [x, *a]\n" + draw(st.sampled_from(["", text]))
    return suffix, text


def text_with_bomb(levels: int, width: int) -> str:
    """The rings example with an alias bomb as its description (a valid spec once expanded,
    if it were not refused)."""
    import yaml

    body = yaml.safe_dump({k: v for k, v in BASES["rings"].items() if k != "description"})
    return alias_bomb(levels, width) + f"description: *a{levels - 1}\n" + body


def _cyclic(data: Any) -> bool:
    try:
        json.dumps(data, default=str)
        return False
    except (ValueError, RecursionError):
        return True


# -- --set options -----------------------------------------------------------------------------


@st.composite
def set_options(draw: Any) -> list[str]:
    """Up to three ``--set`` options: real paths of the examples, invented ones, very long
    or deep ones, with JSON or plain-text values (non-finite, deep, huge ones too)."""
    return [f"{draw(SET_PATHS)}={draw(SET_VALUES)}" for _ in range(draw(st.integers(1, 3)))]


SET_PATHS = st.one_of(
    st.sampled_from([format_loc(p) for p in paths(BASES["rings"]) if p]), TEXT,
    st.sampled_from(["loss.params.gamma", "loss[0].params.gamma", "scheduler.0.params.gamma", "trainer.device",
                     "model.import", "a" * 600, ".".join(f"k{i}" for i in range(5000)), "loss[99999999999999999999]",
                     "trainer..epochs", "name", "callbacks[0].params.norm_type", "optimizer.params.lr",
                     "trainer.epochs", "data.val_split", "scheduler.params.lr_lambda", "scheduler.name"]))
SET_VALUES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)), TEXT,
    st.integers(0, 100).map(str), st.floats(0, 1).map(repr), st.sampled_from(["true", "false", "null"]),
    st.sampled_from(["1e999", "NaN", "-Infinity", "[" * 3000 + "]" * 3000, '"inf"', "inf",
                     "cuda:99999999999999999999999", "cpu", "lambda", "0.95 ** epoch", "floor(9)**floor(9)**floor(9)",
                     '{"name": "lambda", "params": {"lr_lambda": "floor(9)**floor(9)**floor(9)"}}']))
