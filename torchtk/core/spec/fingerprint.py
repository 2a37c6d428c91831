"""What may change when a run is resumed: the spec's fingerprint, and where two differ.

A checkpoint stores the fingerprint of the spec it was trained with; ``--resume``
refuses a spec whose fingerprint differs, naming the spec paths, except for the
settings in :data:`RESUMABLE_CHANGES` (more epochs, another device or output dir).
"""

from __future__ import annotations

from typing import Any

from torchtk.core.spec.models import RunSpec

RESUMABLE_CHANGES = {("trainer", "epochs"), ("trainer", "output_dir"), ("trainer", "progress"),
                     ("trainer", "log_every_n_steps"), ("trainer", "device"), ("description",),
                     ("trainer", "val_every_n_epochs"), ("trainer", "keep_dev_run")}
# settings added after checkpoints were first written: left out of the fingerprint at their
# default, so a run checkpointed before they existed still resumes
ADDED_LATER = ("fast_dev_run", "limit_train_batches", "limit_val_batches", "overfit_batches")


def spec_fingerprint(spec: RunSpec) -> dict[str, Any]:
    """The parts of a spec that must not change when a run is resumed."""
    data = spec.model_dump(mode="json")
    for path in RESUMABLE_CHANGES:
        node = data
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    defaults = type(spec.trainer).model_fields
    for name in ADDED_LATER:
        value, default = data["trainer"].get(name), defaults[name].default
        if type(value) is type(default) and value == default:  # 1 (one batch) is no 1.0 (all of them)
            del data["trainer"][name]
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
