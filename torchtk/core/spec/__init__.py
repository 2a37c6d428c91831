"""The run spec: what a run is, read from a file, a dict or a ``RunSpec``, and validated.

Validation is strict: unknown keys are errors and nothing is coerced (``"0.1"`` is not
a number). Every problem is reported with its spec path, such as
``loss[0].params.gamma``, and, for a file, its ``file:line:column``.

The package is split by concern; everything other modules use is importable from here:

- :mod:`~torchtk.core.spec.models`: the pydantic models and :data:`SLOTS`, the one table of component slots
- :mod:`~torchtk.core.spec.loading`: reading JSON/YAML files (with positions), bundled examples
- :mod:`~torchtk.core.spec.sourcemap`: where each value of a file is (line, column)
- :mod:`~torchtk.core.spec.overrides`: ``--set key.path=value``
- :mod:`~torchtk.core.spec.problems`: spec paths, and pydantic errors worded for JSON users
- :mod:`~torchtk.core.spec.resolve`: the second pass against a registry, :class:`ResolvedSpec`, :func:`load_resolved`
- :mod:`~torchtk.core.spec.schema`: the JSON Schema of ``tk schema``
- :mod:`~torchtk.core.spec.fingerprint`: what may change when a run is resumed
- :mod:`~torchtk.core.spec.paths`: which params are paths, made absolute against the spec file's folder
"""

from torchtk.core.spec.fingerprint import RESUMABLE_CHANGES, spec_defaults, spec_differences, spec_fingerprint
from torchtk.core.spec.loading import EXAMPLES_DIR, bundled_examples, read_spec_file, read_spec_source
from torchtk.core.spec.models import (
    COMPONENT_SLOTS,
    ONE_OR_MANY,
    SLOT_BY_FIELD,
    SLOTS,
    ComponentRef,
    DataSpec,
    LossTerm,
    MetricRef,
    ModelRef,
    RunSpec,
    SchedulerRef,
    Slot,
    TrainerSpec,
)
from torchtk.core.spec.overrides import apply_override, blame_overrides
from torchtk.core.spec.paths import path_settings, same_path
from torchtk.core.spec.problems import format_loc, problems_from, split_path
from torchtk.core.spec.resolve import Entry, ResolvedSpec, load_resolved, load_spec, resolve
from torchtk.core.spec.schema import run_spec_schema
from torchtk.core.spec.sourcemap import DuplicateKey, SourceMap

__all__ = [
    "COMPONENT_SLOTS", "EXAMPLES_DIR", "ONE_OR_MANY", "RESUMABLE_CHANGES", "SLOTS", "SLOT_BY_FIELD",
    "ComponentRef", "DataSpec", "DuplicateKey", "Entry", "LossTerm", "MetricRef", "ModelRef", "ResolvedSpec",
    "RunSpec", "SchedulerRef", "Slot", "SourceMap", "TrainerSpec",
    "apply_override", "blame_overrides", "bundled_examples", "format_loc", "load_resolved", "load_spec",
    "path_settings", "problems_from", "read_spec_file", "read_spec_source", "resolve", "run_spec_schema", "same_path",
    "spec_defaults", "spec_differences", "spec_fingerprint", "split_path",
]
