"""The run spec: pydantic models, loading (JSON or YAML), ``--set`` overrides, and the
second validation pass that checks every component's params against its own model.

Validation is strict: unknown keys are errors and nothing is coerced (``"0.1"`` is not
a number). Every problem is reported with its spec path, such as
``loss[0].params.gamma``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from torchtk.core.errors import SpecError, TorchtkError, UserInputError

if TYPE_CHECKING:
    from torchtk.core.registry import Registry

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ComponentRef(_Strict):
    """``{"name": ..., "params": {...}}``; a bare string is shorthand for ``{"name": ...}``."""

    name: str = Field(description="Component name, alias, or plugin::name to pick a provider.")
    params: dict[str, Any] = Field(default_factory=dict, description="The component's params.")
    _built_params: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @property
    def validated_params(self) -> Any:
        """The component's params model instance (set by :func:`resolve_spec`)."""
        return self._built_params


class ModelRef(ComponentRef):
    """A model by component name, or any factory by import path:
    ``{"import": "my_package.models:build", "params": {...}}`` calls ``build(**params)``."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    name: Optional[str] = Field(None, exclude_if=lambda value: value is None,
                                description="Model component name (see tk list models).")
    import_: Optional[str] = Field(None, alias="import", exclude_if=lambda value: value is None, pattern=r"^[\w.]+:[\w.]+$",
                                   description="package.module:factory returning an nn.Module.")

    @model_validator(mode="after")
    def _name_or_import(self) -> "ModelRef":
        if (self.name is None) == (self.import_ is None):
            raise ValueError("give exactly one of name or import")
        return self


class LossTerm(ComponentRef):
    """One term of the run's loss; the run's loss is the weighted sum of its terms."""

    weight: float = Field(1.0, description="Multiplier of this term in the total loss.")


class SchedulerRef(ComponentRef):
    """A scheduler, optionally overriding when it steps."""

    interval: Optional[Literal["epoch", "step"]] = Field(
        None, description="Step per epoch or per optimizer update; default: the scheduler's own declaration.")
    monitor: str = Field("val_loss", description="Logged value passed to schedulers that need a metric.")


class DataSpec(ComponentRef):
    """The dataset and how it is split and batched."""

    batch_size: int = Field(32, ge=1, description="Samples per batch.")
    val_split: float = Field(0.2, ge=0, lt=1, description="Fraction held out for validation (0: no validation).")
    shuffle: bool = Field(True, description="Reshuffle the training set every epoch.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: load in the main process).")


class TrainerSpec(_Strict):
    """How long, where, and what to keep."""

    epochs: int = Field(10, ge=1, description="Number of passes over the training set.")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N or mps.")
    output_dir: str = Field("runs", description="Where run directories are created.")
    monitor: str = Field("val_loss", description="Logged value that decides the best checkpoint.")
    mode: Literal["min", "max"] = Field("min", description="Whether lower (min) or higher (max) monitor is better.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Batches whose gradients are summed per optimizer update.")
    log_every_n_steps: int = Field(20, ge=1, description="How often the live loss is read from the device.")
    progress: bool = Field(True, description="Show a progress bar on a terminal.")


class RunSpec(_Strict):
    """A whole training run."""

    name: str = Field("run", pattern=r"^[\w.-]+$", description="Run name, used in the run directory's name.")
    description: str = Field("", description="What this run is for (shown by tk examples).")
    seed: int = Field(0, ge=0, lt=2**63, description="Seed for initialisation, splitting and shuffling.")
    model: ModelRef
    data: DataSpec
    loss: list[LossTerm] = Field(min_length=1, description="One loss or a list of weighted terms.")
    optimizer: ComponentRef = Field(default_factory=lambda: ComponentRef(name="adam"))
    scheduler: list[SchedulerRef] = Field(default_factory=list, description="None, one, or a list (chained).")
    freeze: list[ComponentRef] = Field(default_factory=list, description="Fine-tuning policies, applied in order.")
    precision: ComponentRef = Field(default_factory=lambda: ComponentRef(name="fp32"))
    callbacks: list[ComponentRef] = Field(default_factory=list, description="Step/epoch callbacks, run in this order.")
    metrics: list[ComponentRef] = Field(default_factory=list, description="Validation metrics, logged as val_<name>.")
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("loss", "scheduler"):
                if isinstance(data.get(key), (str, dict)):
                    data[key] = [data[key]]
            if data.get("scheduler") is None and "scheduler" in data:
                data["scheduler"] = []
        return data

    def component_refs(self) -> list[tuple[str, str, ComponentRef]]:
        """``(spec path, kind, ref)`` for every component the spec names."""
        refs: list[tuple[str, str, ComponentRef]] = [("model", "model", self.model), ("data", "dataset", self.data)]
        refs += [(f"loss[{i}]", "loss", ref) for i, ref in enumerate(self.loss)]
        refs.append(("optimizer", "optimizer", self.optimizer))
        refs += [(f"scheduler[{i}]", "scheduler", ref) for i, ref in enumerate(self.scheduler)]
        refs += [(f"freeze[{i}]", "freeze", ref) for i, ref in enumerate(self.freeze)]
        refs.append(("precision", "precision", self.precision))
        refs += [(f"callbacks[{i}]", "callback", ref) for i, ref in enumerate(self.callbacks)]
        refs += [(f"metrics[{i}]", "metric", ref) for i, ref in enumerate(self.metrics)]
        return refs


# -- error formatting ----------------------------------------------------------------------


def format_loc(loc: tuple[Any, ...]) -> str:
    """``("loss", 0, "params", "gamma")`` -> ``loss[0].params.gamma``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "list[", "dict[")):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


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
        return list(current.model_fields)
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
        if loc and isinstance(loc[-1], str) and loc[-1].startswith("function-"):
            loc = loc[:-1]
        path = format_loc(prefix + loc)
        if item["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            message = f"unknown key {loc[-1]!r}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
        elif item["type"] == "missing":
            message = "required, but missing"
        else:
            message = f"{_plain(item['msg'])} (got {json.dumps(item.get('input'), default=repr)})"
        problems.append((path, message))
    return problems


# -- loading -----------------------------------------------------------------------------


def bundled_examples() -> dict[str, Path]:
    """Example name -> spec file shipped inside the package."""
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*.json"), key=lambda p: p.stem)}


def read_spec_file(source: str | Path) -> tuple[dict[str, Any], str]:
    """Parse a spec file (or bundled example name) into a dict; errors carry file:line:col."""
    if not str(source).strip():
        raise UserInputError("SPEC is empty: give a spec file or a bundled example name (see tk examples)")
    path = Path(source)
    if not path.exists():
        examples = bundled_examples()
        if str(source) in examples:
            path = examples[str(source)]
        else:
            hint = f" Bundled examples: {', '.join(examples)}." if examples else ""
            raise UserInputError(f"{source}: no such spec file or bundled example.{hint}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read spec file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserInputError(f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start}); specs are UTF-8 JSON or YAML") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_spec_yaml_loader())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise UserInputError(f"{where}: malformed YAML: {exc.problem}") from exc
    else:
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_nan)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from exc
        except DuplicateKey as exc:
            line, column = _position_of_duplicate(text, exc.key)
            raise UserInputError(f"{path}:{line}:{column}: malformed JSON: {exc}") from None
        except ValueError as exc:
            raise UserInputError(f"{path}: malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a spec must be a JSON object, got {type(data).__name__}")
    return data, str(path)


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"the key {key!r} appears twice in one object")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a key twice are an error: the last one would silently win."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise DuplicateKey(key)
        data[key] = value
    return data


def _position_of_duplicate(text: str, key: str) -> tuple[int, int]:
    """Line and column of the second ``"key":`` in ``text`` (where the duplicate is)."""
    matches = list(re.finditer(re.escape(json.dumps(key)) + r"\s*:", text))
    offset = matches[1].start() if len(matches) > 1 else 0
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _spec_yaml_loader() -> Any:
    """A safe YAML loader that rejects duplicate keys and reads ``1e-3`` as a number
    (YAML 1.1 would read it as a string)."""
    import yaml

    class SpecLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
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


_PATH_SYNTAX = re.compile(r"^[A-Za-z_][\w-]*(\[\d+\]|\.[A-Za-z_][\w-]*|\.\d+)*$")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
# slots holding component refs, where a bare name may be expanded to {"name": ...} to set its params
COMPONENT_SLOTS = {"model", "data", "loss", "optimizer", "scheduler", "freeze", "precision", "callbacks", "metrics"}
ONE_OR_MANY = {"loss", "scheduler"}


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


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in _PATH_PART.findall(path):
        if index:
            parts.append(int(index))
        elif name.isdigit():
            parts.append(int(name))
        else:
            parts.append(name)
    return parts


def apply_override(data: dict[str, Any], assignment: str) -> tuple[str, ...]:
    """Apply ``key.path=value`` to raw spec data; the value is JSON when it parses as JSON.

    Returns the normalised path, so validation errors there can be blamed on ``--set``.
    A component written as a bare name (``"loss": "mse"``) is expanded so its params
    (``loss[0].params.reduction``) or weight can be set.
    """
    if "=" not in assignment:
        raise UserInputError(f"--set {assignment!r}: expected key.path=value, e.g. --set trainer.epochs=3")
    path_text, _, value_text = assignment.partition("=")
    path_text = path_text.strip()
    if not _PATH_SYNTAX.match(path_text):
        raise UserInputError(f"--set {assignment!r}: {path_text!r} is not a key path; write keys separated by "
                             "dots and list indexes in brackets, e.g. loss[0].params.gamma")
    parts = _split_path(path_text)
    try:
        value: Any = json.loads(value_text, parse_constant=_no_nan)
    except (json.JSONDecodeError, ValueError):
        value = value_text
    in_slot = parts[0] in COMPONENT_SLOTS
    node: Any = data
    for i, part in enumerate(parts):
        where = format_loc(tuple(parts[: i + 1]))
        last = i == len(parts) - 1
        if isinstance(part, int):
            if i == 1 and parts[0] in ONE_OR_MANY and isinstance(node, (str, dict)):
                node = data[parts[0]] = [node]  # "loss": "mse" is the one-element list ["mse"]
            if not isinstance(node, list) or part >= len(node):
                raise UserInputError(f"--set {path_text}: {where} does not exist in the spec")
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
    return tuple(parts)


def load_spec(source: Any, overrides: list[str] | None = None, registry: Registry | None = None) -> RunSpec:
    """Read, override and fully validate a spec: a path, a bundled example, a dict or a RunSpec."""
    label = "spec"
    if isinstance(source, RunSpec):
        data = source.model_dump()
    elif isinstance(source, dict):
        data = json.loads(json.dumps(source))
    else:
        data, label = read_spec_file(source)
    override_paths = [apply_override(data, item) for item in overrides or ()]
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as exc:
        raise _blame_overrides(SpecError(problems_from(exc, (), RunSpec), label), override_paths, overrides) from None
    try:
        return resolve_spec(spec, registry, label)
    except SpecError as exc:
        raise _blame_overrides(exc, override_paths, overrides) from None


def _blame_overrides(error: SpecError, paths: list[tuple[Any, ...]], overrides: list[str] | None) -> SpecError:
    """Rewrite problems caused by ``--set`` so they name the option the user typed."""
    by_path = {format_loc(p): text for p, text in zip(paths, overrides or ())}
    problems = []
    for path, message in error.problems:
        if path in by_path:
            if message.startswith("unknown key"):
                message = "no such setting" + message[len("unknown key " + path.split(".")[-1].__repr__()):]
            path = f"--set {by_path[path]}: {path}"
        problems.append((path, message))
    return SpecError(problems, error.source)


def resolve_spec(spec: RunSpec, registry: Registry | None = None, label: str = "spec") -> RunSpec:
    """Second pass: resolve every name to one component and validate its params.

    Names become canonical (aliases resolved), and ``params`` are replaced by the full
    validated params, defaults included, so the saved ``spec.json`` is explicit.
    """
    if registry is None:
        from torchtk.core.registry import get_registry

        registry = get_registry()
    _ = registry.providers  # a fatal plugin error (strict mode) surfaces once, not once per component
    problems: list[tuple[str, str]] = []
    if spec.model.import_ is not None:
        problems += _check_factory(spec.model)
    for path, kind, ref in spec.component_refs():
        if ref.name is None:
            continue
        try:
            component = registry.resolve(kind, ref.name)
        except TorchtkError as exc:
            problems.append((f"{path}.name", str(exc)))
            continue
        try:
            model = registry.params_model(component)
        except TorchtkError as exc:
            problems.append((f"{path}.name", str(exc)))
            continue
        try:
            validated = model.model_validate(ref.params)
        except ValidationError as exc:
            problems += problems_from(exc, (*_split_path(path), "params"), model)
            continue
        scoped = ref.name if "::" in ref.name else component.name
        ref.name = scoped
        ref.params = validated.model_dump(mode="json")
        ref._built_params = validated
    if problems:
        raise SpecError(problems, label)
    return spec


def _check_factory(ref: ModelRef) -> list[tuple[str, str]]:
    """An imported model factory must import and accept the given params."""
    import inspect

    from torchtk.core.components import load_object

    try:
        factory = load_object(ref.import_)
    except (ImportError, AttributeError) as exc:
        return [("model.import", f"cannot import {ref.import_!r}: {type(exc).__name__}: {exc}")]
    if not callable(factory):
        return [("model.import", f"{ref.import_!r} is not callable")]
    try:
        inspect.signature(factory).bind(**ref.params)
    except TypeError as exc:
        return [("model.params", f"{ref.import_} does not accept these params: {exc}")]
    except ValueError:  # no signature (builtins): let the call decide
        pass
    return []


def run_spec_schema(registry: Registry | None = None) -> dict[str, Any]:
    """JSON Schema of the run spec in which every component slot accepts exactly the
    installed components, each with its own params schema (``tk schema``).

    Each kind gets a ``$defs`` entry ``<kind>_ref``: one alternative per component
    (``name`` fixed to its name or aliases, ``params`` its params model) plus the bare
    string shorthand. Editors that read JSON Schema can then complete and check specs.
    """
    if registry is None:
        from torchtk.core.registry import get_registry

        registry = get_registry()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **RunSpec.model_json_schema()}
    defs = schema.setdefault("$defs", {})
    slots = {  # field -> (kind, the pydantic model of the slot, one-or-list)
        "model": ("model", ModelRef, False), "data": ("dataset", DataSpec, False),
        "loss": ("loss", LossTerm, True), "optimizer": ("optimizer", ComponentRef, False),
        "scheduler": ("scheduler", SchedulerRef, True), "freeze": ("freeze", ComponentRef, True),
        "precision": ("precision", ComponentRef, False), "callbacks": ("callback", ComponentRef, True),
        "metrics": ("metric", ComponentRef, True),
    }
    for field, (kind, slot_model, many) in slots.items():
        slot_fields = {k: v for k, v in defs[slot_model.__name__]["properties"].items()
                       if k not in ("name", "params", "import")}
        names: list[str] = []
        alternatives: list[dict[str, Any]] = []
        for component in registry.components(kind):
            try:
                params_model = registry.params_model(component)
            except TorchtkError:  # a broken plugin's component is left out, with a warning
                continue
            component_names = [component.name, *component.aliases]
            names += component_names
            alternatives.append({
                "type": "object",
                "title": f"{kind} {component.name}",
                "description": component.summary,
                "properties": {"name": _name_schema(component_names),
                               "params": _hoist_defs(params_model.model_json_schema(), defs,
                                                     f"{kind}.{component.name}."),
                               **slot_fields},
                "required": ["name"],
                "additionalProperties": False,
            })
        if slot_model is ModelRef:
            alternatives.append({"type": "object", "title": "model by import path",
                                 "properties": {"import": defs["ModelRef"]["properties"]["import"],
                                                "params": {"type": "object"}},
                                 "required": ["import"], "additionalProperties": False})
        defs[f"{kind}_ref"] = {"anyOf": [{"type": "string", **_name_schema(names)}, *alternatives]}
        ref = {"$ref": f"#/$defs/{kind}_ref"}
        description = schema["properties"][field].get("description", "")
        if many and field in ("loss", "scheduler"):
            schema["properties"][field] = {"anyOf": [ref, {"type": "array", "items": ref}], "description": description}
        elif many:
            schema["properties"][field] = {"type": "array", "items": ref, "description": description}
        else:
            schema["properties"][field] = {**ref, "description": description}
    return schema


def _name_schema(names: list[str]) -> dict[str, Any]:
    """A component name: one of ``names``, or ``plugin::name`` picking a provider."""
    scoped = "^[^:]+::(" + "|".join(re.escape(n) for n in names) + ")$"
    return {"anyOf": [{"enum": names}, {"type": "string", "pattern": scoped}]}


def _hoist_defs(schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Move a nested schema's ``$defs`` into the top-level ones under unique names."""
    nested = schema.pop("$defs", {})
    if not nested:
        return schema
    text = json.dumps(schema)
    for name, definition in nested.items():
        text = text.replace(f'"#/$defs/{name}"', f'"#/$defs/{prefix}{name}"')
        defs[prefix + name] = json.loads(json.dumps(definition).replace('"#/$defs/', f'"#/$defs/{prefix}'))
    return json.loads(text)


# -- resuming --------------------------------------------------------------------------

RESUMABLE_CHANGES = {("trainer", "epochs"), ("trainer", "output_dir"), ("trainer", "progress"),
                     ("trainer", "log_every_n_steps"), ("trainer", "device"), ("description",)}


def spec_fingerprint(spec: RunSpec) -> dict[str, Any]:
    """The parts of a spec that must not change when a run is resumed."""
    data = spec.model_dump(mode="json")
    for path in RESUMABLE_CHANGES:
        node = data
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return data


def spec_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Spec paths where two fingerprints differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(saved.keys() | current.keys()):
            found += spec_differences(saved.get(key), current.get(key), f"{prefix}.{key}" if prefix else key)
        return found
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [d for i, (a, b) in enumerate(zip(saved, current)) for d in spec_differences(a, b, f"{prefix}[{i}]")]
    return [] if saved == current else [prefix or "(root)"]
