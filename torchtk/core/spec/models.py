"""The run spec's pydantic models, and the one table of its component slots.

These models are the first validation pass: the spec's own shape (keys, types,
bounds), strict and with unknown keys rejected. A component's ``params`` stay a plain
dict here; the second pass (:mod:`torchtk.core.spec.resolve`) checks them against the
component's own params model, which only the registry knows.

:data:`SLOTS` lists every field that holds component references, in build order. Build
order, spec paths, the one-or-list shorthand, ``--set`` shorthand expansion and the JSON
Schema are all derived from it, so a new slot is added in one place (and as a field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


# package.module:attribute, each part a Python name (no relative import such as ".:x")
IMPORT_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
MAX_CUDA_INDEX = 127  # torch keeps a device index in 8 bits: cuda:128 would silently become cuda:-128


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


OBJECT_PLACEHOLDER = r"^<python object: [^<>]*>$"  # what spec.json records of an object given from Python


class ComponentRef(_Strict):
    """``{"name": ..., "params": {...}}``; a bare string is shorthand for ``{"name": ...}``.

    Any slot also takes ``{"import": "package.module:factory", "params": {...}}`` (the
    factory is imported and called by :mod:`torchtk.core.imported`) or, in spec.json, the
    ``{"object": "<python object: ...>"}`` record of an object given from Python."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    name: Optional[str] = Field(None, exclude_if=lambda value: value is None,
                                description="Component name, alias, or plugin::name to pick a provider.")
    import_: Optional[str] = Field(None, alias="import", exclude_if=lambda value: value is None, pattern=IMPORT_PATH,
                                   description="package.module:factory, imported and called with the params "
                                               "(instead of a name).")
    object_: Optional[str] = Field(None, alias="object", exclude_if=lambda value: value is None,
                                   pattern=OBJECT_PLACEHOLDER,
                                   description="Written by torchtk: an object given from Python (not re-runnable).")
    params: dict[str, Any] = Field(default_factory=dict, description="The component's params.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_reference(self) -> "ComponentRef":
        if sum(value is not None for value in (self.name, self.import_, self.object_)) != 1:
            raise ValueError("give exactly one of name or import")
        return self

    @property
    def label(self) -> str:
        """How messages name this reference: its name, import path or object."""
        return self.name or self.import_ or self.object_ or ""

    @property
    def key(self) -> str:
        """Its short name in logged columns and checkpoint keys: ``focal`` for
        ``plugin::focal`` and for ``{"import": "my_losses:focal"}``."""
        if self.name is not None:
            return self.name.split("::")[-1]
        text = (self.import_ or self.object_ or "").removesuffix(">")
        return re.split(r"[:.\s]", text)[-1] or "object"


class ModelRef(ComponentRef):
    """A model by component name, or any factory by import path:
    ``{"import": "my_package.models:build", "params": {...}}`` calls ``build(**params)``."""


class LossTerm(ComponentRef):
    """One term of the run's loss; the run's loss is the weighted sum of its terms."""

    weight: float = Field(1.0, description="Multiplier of this term in the total loss.")


class SchedulerRef(ComponentRef):
    """A scheduler, optionally overriding when it steps."""

    interval: Optional[Literal["epoch", "step"]] = Field(
        None, description="Step per epoch or per optimizer update; default: the scheduler's own declaration.")
    monitor: str = Field("val_loss", description="Logged value passed to schedulers that need a metric.")


class MetricRef(ComponentRef):
    """A metric, computed on the validation batches (``val_<name>``)."""

    train: bool = Field(False, description="Also computed on the training batches, logged as train_<name>.")


class TransformsSpec(_Strict):
    """Input transforms per split (``transform`` components), so training augmentations
    never reach validation."""

    train: list[ComponentRef] = Field(default_factory=list, description="Applied to each training input, in order.")
    val: list[ComponentRef] = Field(default_factory=list, description="Applied to each validation input, in order.")


class DataSpec(ComponentRef):
    """The dataset and how it is split and batched."""

    batch_size: int = Field(32, ge=1, description="Samples per batch.")
    val_split: float = Field(0.2, ge=0, lt=1, description="Fraction held out for validation (0: no validation).")
    shuffle: bool = Field(True, description="Reshuffle the training set every epoch.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: load in the main process).")
    pin_memory: Optional[bool] = Field(None, description="Pin batches in page-locked memory (default: on CUDA only).")
    persistent_workers: bool = Field(False, description="Keep DataLoader workers alive between epochs "
                                                        "(with num_workers > 0).")
    transforms: TransformsSpec = Field(default_factory=TransformsSpec,
                                       description="Input transforms for the train and val splits.")


@dataclass(frozen=True)
class Slot:
    """A field of :class:`RunSpec` that holds component references.

    ``many``: the field is a list (spec paths ``field[i]``); ``one_or_many``: a single
    reference is also accepted and read as a one-element list.
    """

    field: str  # a field of RunSpec, or a dotted path into one (data.transforms.train)
    kind: str
    ref_model: type[ComponentRef]
    many: bool = False
    one_or_many: bool = False

    def value(self, spec: Any) -> Any:
        """The slot's value in ``spec`` (a RunSpec)."""
        for name in self.field.split("."):
            spec = getattr(spec, name)
        return spec

    def paths(self, value: Any) -> list[tuple[str, Any]]:
        """``(spec path, ref)`` for the slot's value in a spec."""
        if self.many:
            return [(f"{self.field}[{index}]", ref) for index, ref in enumerate(value)]
        return [(self.field, value)]


SLOTS: tuple[Slot, ...] = (  # in build order
    Slot("model", "model", ModelRef),
    Slot("init", "init", ComponentRef, many=True),
    Slot("data", "dataset", DataSpec),
    Slot("data.transforms.train", "transform", ComponentRef, many=True),
    Slot("data.transforms.val", "transform", ComponentRef, many=True),
    Slot("loss", "loss", LossTerm, many=True, one_or_many=True),
    Slot("optimizer", "optimizer", ComponentRef),
    Slot("scheduler", "scheduler", SchedulerRef, many=True, one_or_many=True),
    Slot("freeze", "freeze", ComponentRef, many=True),
    Slot("precision", "precision", ComponentRef),
    Slot("callbacks", "callback", ComponentRef, many=True),
    Slot("metrics", "metric", MetricRef, many=True),
)
SLOT_BY_FIELD: dict[str, Slot] = {slot.field: slot for slot in SLOTS}
# top-level slots holding component refs, where --set may expand a bare name to {"name": ...}
COMPONENT_SLOTS = frozenset(field for field in SLOT_BY_FIELD if "." not in field)
ONE_OR_MANY = frozenset(slot.field for slot in SLOTS if slot.one_or_many)


# a number of batches (int >= 1) or a fraction of them (float in (0, 1]), as Lightning's limit_*_batches
BatchLimit = Union[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0, le=1)]]


class TrainerSpec(_Strict):
    """How long, where, and what to keep."""

    epochs: int = Field(10, ge=1, description="Number of passes over the training set.")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:[0-9]{1,30})?)$", description="auto, cpu, cuda, cuda:N or mps.")
    output_dir: str = Field("runs", description="Where run directories are created.")
    checkpoint_every: int = Field(1, ge=1, description="Write checkpoints/last.pt every N epochs and after the "
                                  "last one (best.pt is written whenever the monitor improves); a resume "
                                  "retrains at most N-1 epochs.")
    monitor: str = Field("val_loss", description="Logged value that decides the best checkpoint.")
    mode: Literal["min", "max"] = Field("min", description="Whether lower (min) or higher (max) monitor is better.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Batches whose gradients are summed per optimizer update.")
    log_every_n_steps: int = Field(20, ge=1, description="How often the live loss is read from the device.")
    progress: bool = Field(True, description="Show a progress bar on a terminal or in a notebook; false prints "
                                             "one line per epoch there instead.")
    # dev-run switches (Lightning's names); the data step applies them (torchtk.core.data.batch_limits)
    fast_dev_run: Union[bool, Annotated[int, Field(ge=1)]] = Field(
        False, description="Smoke test: one epoch of N batches of train and val (true: 1), nothing kept unless "
                           "keep_dev_run.")
    keep_dev_run: bool = Field(False, description="With fast_dev_run, keep the run directory under output_dir "
                                                  "(default: a temporary directory, removed at the end).")
    limit_train_batches: BatchLimit = Field(1.0, description="Training batches per epoch: a number >= 1, or a "
                                                             "fraction in (0, 1] of them.")
    limit_val_batches: BatchLimit = Field(1.0, description="Validation batches per pass: a number >= 1, or a "
                                                           "fraction in (0, 1] of them.")
    overfit_batches: Union[Annotated[int, Field(ge=0)], Annotated[float, Field(ge=0, le=1)]] = Field(
        0, description="Train on the same first N batches (or fraction) every epoch, unshuffled, and validate on "
                       "them (0: off); overrides the limits.")
    val_every_n_epochs: int = Field(1, ge=1, description="Validate every N epochs, and always after the last one.")
    sync_batchnorm: bool = Field(False, description="Under torchrun (DDP on CUDA): BatchNorm statistics over the "
                                                    "global batch (SyncBatchNorm); no effect in one process.")
    # speed options (torchtk.core.speed): none changes what is trained or what checkpoints hold
    compile: Union[bool, Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]] = Field(
        False, description="torch.compile the model once before training: true (mode default) or a mode; "
                           "checkpoints keep the plain module's keys.")
    channels_last: bool = Field(False, description="Keep the model's 4-D weights and 4-D input batches in "
                                                   "channels-last (NHWC) memory order: faster convolutions.")
    tf32: Optional[bool] = Field(None, description="CUDA float32 matmuls and convolutions in TF32 (true) or full "
                                                   "float32 (false); unset leaves torch's defaults.")

    @field_validator("device")
    @classmethod
    def _device_index(cls, value: str) -> str:
        if value.startswith("cuda:") and int(value[5:]) > MAX_CUDA_INDEX:
            raise ValueError(f"a CUDA device index is at most {MAX_CUDA_INDEX}; give cuda:N with N the index of "
                             "a GPU here (cuda:0 is the first)")
        return value

    @field_validator("limit_train_batches", "limit_val_batches", mode="before")
    @classmethod
    def _batch_limit(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                value >= 1 if isinstance(value, int) else 0 < value <= 1):
            hint = " (no validation at all: data.val_split 0)" if info.field_name == "limit_val_batches" else ""
            raise ValueError(f"give a number of batches >= 1 or a fraction in (0, 1]{hint}")
        return value

    @field_validator("overfit_batches", mode="before")
    @classmethod
    def _overfit(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                value >= 0 if isinstance(value, int) else 0 <= value <= 1):
            raise ValueError("give a number of batches >= 1, a fraction in (0, 1], or 0 (off)")
        return value

    @field_validator("fast_dev_run", mode="before")
    @classmethod
    def _fast_dev_run(cls, value: Any) -> Any:
        if not isinstance(value, bool) and not (isinstance(value, int) and value >= 1):
            raise ValueError("give true (one batch), a number of batches >= 1, or false (off)")
        return value


class PluginFile(_Strict):
    """How ``spec.json`` records a plugin file: its absolute path and content hash."""

    file: str = Field(description="The plugin file's absolute path.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Its content's SHA-256 when the run started.")


class PluginModule(_Strict):
    """How ``spec.json`` records a plugin module: its name, version and file."""

    module: str = Field(description="The module's dotted name.")
    version: str = Field("", description="The version of the distribution that installs it, if any.")
    file: str = Field("", description="The file it was imported from.")


PluginEntry = Union[Annotated[str, Field(min_length=1)], PluginFile, PluginModule]


RUN_NAME = re.compile(r"\w[\w.-]*")  # one folder name: no path separator, no leading "." (".." included) or "-"
MAX_NAME_BYTES = 200  # with "-YYYYMMDD-HHMMSS-NN" still under the 255 bytes of a file name


class RunSpec(_Strict):
    """A whole training run."""

    name: str = Field("run", json_schema_extra={"pattern": r"^\w[\w.-]*$"},
                      description="Run name, used in the run directory's name: letters, digits, _, . and -, "
                                  "starting with a letter, digit or _.")
    description: str = Field("", description="What this run is for (shown by tk examples).")
    seed: int = Field(0, ge=0, lt=2**63, description="Seed for initialisation, splitting and shuffling.")
    plugins: list[PluginEntry] = Field(
        default_factory=list, exclude_if=lambda value: not value,
        description="Plugins this run loads: .py files (relative to the spec file) or module names; "
                    "their components are then named as installed ones are.")
    notes: list[str] = Field(default_factory=list, exclude_if=lambda value: not value,
                             description="Written by torchtk into spec.json: what it cannot re-create.")
    model: ModelRef
    init: list[ComponentRef] = Field(default_factory=list, description="Weight initialisers, applied in order "
                                                                      "right after the model is built.")
    data: DataSpec
    loss: list[LossTerm] = Field(min_length=1, description="One loss or a list of weighted terms.")
    optimizer: ComponentRef = Field(default_factory=lambda: ComponentRef(name="adam"))
    scheduler: list[SchedulerRef] = Field(default_factory=list, description="None, one, or a list (chained).")
    freeze: list[ComponentRef] = Field(default_factory=list, description="Fine-tuning policies, applied in order.")
    precision: ComponentRef = Field(default_factory=lambda: ComponentRef(name="fp32"))
    callbacks: list[ComponentRef] = Field(default_factory=list, description="Step/epoch callbacks, run in this order.")
    metrics: list[MetricRef] = Field(default_factory=list, description="Validation metrics, logged as val_<name> "
                                                                      "(and train_<name> with train: true).")
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)

    @field_validator("name", mode="after")
    @classmethod
    def _one_folder_name(cls, value: str) -> str:
        """The name becomes ``<output_dir>/<name>-<timestamp>``: one folder name, never a path
        (no ``/``, no ``..``, not absolute, not hidden) and short enough for any file system."""
        if not RUN_NAME.fullmatch(value):
            raise ValueError("a run name is one folder name: letters, digits, _, . and -, starting with a "
                             "letter, digit or _ (no /, no leading . or -)")
        if len(value.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"a run name is at most {MAX_NAME_BYTES} bytes (UTF-8); it names a folder")
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        """A one-or-many slot given one ref is a one-element list; ``null`` in an
        optional one (``"scheduler": null``) is the empty list."""
        if isinstance(data, dict):
            data = dict(data)
            data.pop("$schema", None)  # for editors (tk schema): never part of the run or its fingerprint
            for field in ONE_OR_MANY:
                if isinstance(data.get(field), (str, dict)):
                    data[field] = [data[field]]
                elif field in data and data[field] is None and not cls.model_fields[field].is_required():
                    data[field] = []
        return data

    def component_refs(self) -> list[tuple[str, str, ComponentRef]]:
        """``(spec path, kind, ref)`` for every component the spec names, in build order."""
        return [(path, slot.kind, ref) for slot in SLOTS for path, ref in slot.paths(slot.value(self))]
