"""Weights for any model factory: read them from a local file or from the torch hub cache,
load them into a model, and say what was loaded.

- ``read_state_dict(path)``: a plain ``state_dict`` (``.pt``/``.pth``), a torchvision
  ``.pth``, a torchtk checkpoint (its ``"model"`` entry), a ``{"state_dict": ...}``
  checkpoint, or ``*.safetensors`` when the ``safetensors`` package is installed. Always
  ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused.
  ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) key prefixes are removed.
- ``cached_torchvision_weights(model, name)``: the torch hub cache file of a torchvision
  weights name (``"IMAGENET1K_V1"``, ``"DEFAULT"``). Nothing is ever downloaded: a file
  that is not there is one input error saying which file to put in which folder.
- ``load_state(model, state, ...)``: copy the tensors in, with the head's keys skipped
  (and reported as newly initialised) when their shapes differ; every other missing or
  unexpected key or shape mismatch is an input error listing the keys. Appends its lines
  to ``model.torchtk_report`` and sets ``model.torchtk_loaded_parameters``.
- ``load_weights(model, source, ...)``: ``read_state_dict`` + ``load_state`` for the small
  built-in nets (``mlp``, ``simple_cnn``), which have no torchvision weights.

Errors are ``UserInputError`` messages that start with ``model.params.weights``, the
spec path of the value that caused them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping

from torchtk import PathParam
from torchtk.core.errors import UserInputError

WHERE = "model.params.weights"
# a weights file, relative to the spec file; an upper-case word (DEFAULT, IMAGENET1K_V1) is a weights name
WeightsPath = Annotated[str, PathParam(names=r"[A-Z0-9_]+")]
SHOWN_KEYS = 5  # keys listed in an error before "... (N in all)"

__all__ = ["WHERE", "WeightsPath", "Loaded", "is_weights_name", "read_state_dict", "cached_torchvision_weights", "hub_checkpoints",
           "load_state", "load_weights", "add_report", "describe_keys"]


def is_weights_name(text: str) -> bool:
    """``"IMAGENET1K_V1"``, ``"DEFAULT"``: an upper-case word, not a path, that is not an existing file."""
    return (text.replace("_", "").isalnum() and text.upper() == text and not Path(text).suffix
            and not Path(text).exists())


def describe_keys(keys: Iterable[str], shown: int = SHOWN_KEYS) -> str:
    """``a, b, c, d, e, ... (12 in all)``."""
    keys = list(keys)
    text = ", ".join(keys[:shown])
    return f"{text}, ... ({len(keys)} in all)" if len(keys) > shown else text


def add_report(model: Any, *lines: str) -> None:
    """Append lines to ``model.torchtk_report`` (the core writes them to train.log)."""
    report = list(getattr(model, "torchtk_report", None) or [])
    model.torchtk_report = report + [line for line in lines if line]


# -- reading -----------------------------------------------------------------------------------

def _strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return state


def _is_tensor_mapping(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The tensors of a weights file and what the file was (``"state_dict"``,
    ``"torchtk checkpoint"``, ...), on the CPU."""
    import torch

    file = Path(path).expanduser()
    if not file.is_file():
        where = "" if file.is_absolute() else f" (relative to {Path.cwd()})"
        raise UserInputError(f"{WHERE}: no file {str(path)!r}{where}; give a weights file (.pt, .pth, a torchtk "
                             f"checkpoint, .safetensors) or a torchvision weights name such as 'DEFAULT'")
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise UserInputError(f"{WHERE}: {str(file)!r} is a safetensors file, which needs the `safetensors` "
                                 f"package (pip install safetensors)") from exc
        try:
            return _strip_prefix(_strip_prefix(dict(load_file(str(file))), "module."), "_orig_mod."), "safetensors"
        except Exception as exc:
            raise UserInputError(f"{WHERE}: cannot read {str(file)!r} as safetensors: {exc}") from exc
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)  # never retried with weights_only=False
    except Exception as exc:
        from torchtk.core.checkpoint import pickled_object

        refused = pickled_object(exc)
        if refused is not None:
            raise UserInputError(f"{WHERE}: {str(file)!r} {refused}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{WHERE}: cannot read {str(file)!r} with torch.load(weights_only=True): {first}") from exc
    kind = "state_dict"
    if isinstance(obj, Mapping) and _is_tensor_mapping(obj.get("model")):
        obj, kind = obj["model"], ("torchtk checkpoint" if "spec" in obj or "format" in obj else "checkpoint 'model'")
    elif isinstance(obj, Mapping) and _is_tensor_mapping(obj.get("state_dict")):
        obj, kind = obj["state_dict"], "checkpoint 'state_dict'"
    if not _is_tensor_mapping(obj):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else []
        holds = f"a mapping with keys {keys}" if isinstance(obj, Mapping) else type(obj).__name__
        raise UserInputError(f"{WHERE}: {str(file)!r} holds {holds}, not a state_dict of tensors, a torchtk "
                             f"checkpoint (its 'model' entry) or a checkpoint with a 'state_dict'")
    state = _strip_prefix(_strip_prefix(dict(obj), "module."), "_orig_mod.")
    return state, kind


# -- the torch hub cache -----------------------------------------------------------------------

def hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision keeps downloaded weights."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_torchvision_weights(model_name: str, weights_name: str) -> tuple[Any, Path]:
    """The torchvision weights enum member and its file in the hub cache.

    ``weights_name`` is a member name of the model's weights enum or ``"DEFAULT"``.
    Raises ``UserInputError`` for an unknown name or a file that is not cached.
    """
    from urllib.parse import urlparse

    from torchvision import models

    enum = models.get_model_weights(model_name)
    members = list(enum.__members__)
    if weights_name not in members:
        raise UserInputError(f"{WHERE}: {model_name} has no weights {weights_name!r}; available: "
                             f"{', '.join(members)} (or a path to a weights file)")
    member = enum[weights_name]
    file_name = os.path.basename(urlparse(member.url).path)
    folder = hub_checkpoints()
    path = folder / file_name
    if not path.is_file():
        alias = f" (= {member.name})" if weights_name != member.name else ""
        raise UserInputError(
            f"{WHERE}: the {model_name} weights {weights_name}{alias} are not in the torch hub cache, and torchtk "
            f"never downloads them. Put the file {file_name} into {folder}/ (fetch it from {member.url}), or set "
            f"TORCH_HOME to a folder whose hub/checkpoints/ holds it, or give the file's path as weights.")
    return member, path


# -- loading -----------------------------------------------------------------------------------

@dataclass
class Loaded:
    """What ``load_state`` did."""

    loaded: list[str] = field(default_factory=list)  # state_dict keys copied from the file
    head: list[str] = field(default_factory=list)  # head keys left as initialised (absent or other shape)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: file (3, 64) vs model (4, 64)"


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _shape(tensor: Any) -> str:
    return "(" + ", ".join(str(s) for s in tensor.shape) + ")"


def load_state(model: Any, state: Mapping[str, Any], *, source: str, head: Iterable[str] = (),
               strict: bool = True, optional: Iterable[str] = (), hint: str = "") -> Loaded:
    """Copy ``state`` into ``model``.

    ``head``: module names (``find_head``) whose keys are skipped when the file lacks
    them or has another shape; they keep the model's fresh initialisation and are
    reported as newly initialised. ``optional``: module names whose keys may be missing
    from the file (kept as initialised, reported). Any other missing or unexpected key
    or shape mismatch is a ``UserInputError`` listing the keys, unless ``strict`` is
    false: then those keys are skipped and reported. ``hint`` ends the error message.
    """
    import torch

    head, optional = tuple(head), tuple(optional)
    own = model.state_dict()
    result = Loaded()
    copy: dict[str, Any] = {}
    for key, value in state.items():
        if key not in own:
            result.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            if _under(key, head):
                result.head.append(key)
            else:
                result.mismatched.append(f"{key}: file {_shape(value)} vs model {_shape(own[key])}")
        else:
            copy[key] = value
    for key in own:
        if key in state:
            continue
        if _under(key, head) or _under(key, optional):
            result.head.append(key)
        elif not key.endswith("num_batches_tracked"):  # older files lack it; BatchNorm fills it in
            result.missing.append(key)
    problems = []
    if result.mismatched:
        problems.append(f"{len(result.mismatched)} keys with another shape: {describe_keys(result.mismatched, 3)}")
    if result.missing:
        problems.append(f"{len(result.missing)} keys missing from the file: {describe_keys(result.missing)}")
    if result.unexpected:
        problems.append(f"{len(result.unexpected)} keys not in the model: {describe_keys(result.unexpected)}")
    if problems and strict:
        raise UserInputError(f"{WHERE}: {source} does not fit the model: " + "; ".join(problems)
                             + (f" ({hint})" if hint else ""))
    with torch.no_grad():
        model.load_state_dict(copy, strict=False)
    result.loaded = list(copy)
    parameters = {name for name, _ in model.named_parameters()}
    previous = frozenset(getattr(model, "torchtk_loaded_parameters", None) or ())
    model.torchtk_loaded_parameters = previous | frozenset(k for k in copy if k in parameters)
    lines = [f"weights: {len(copy)} tensors loaded from {source}"]
    if problems:
        lines.append("weights: skipped (strict_weights is false): " + "; ".join(problems))
    add_report(model, *lines)
    return result


def load_weights(model: Any, source: str, *, head: Iterable[str] | None = None, strict: bool = True) -> Loaded:
    """Load a weights file into a small built-in net (no torchvision weights names):
    the head (default ``find_head(model)``) is skipped when its shape differs."""
    from torchtk.plugins._heads import find_head

    if is_weights_name(source):
        raise UserInputError(f"{WHERE}: {source!r} looks like a torchvision weights name, but "
                             f"{type(model).__name__} models have none; give the path of a weights file")
    state, kind = read_state_dict(source)
    heads = find_head(model) if head is None else list(head)
    result = load_state(model, state, source=f"{source} ({kind})", head=heads, strict=strict)
    if result.head:
        add_report(model, f"weights: {', '.join(result.head)} newly initialised (the file's head has another shape)")
    return result
