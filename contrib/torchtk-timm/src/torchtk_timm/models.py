"""Every timm architecture by name, through timm's own ``create_model``.

``num_classes`` and ``in_chans`` are timm's arguments, so timm sizes the head and adapts
the first convolution (its ``adapt_input_conv``) the way it documents. Weights follow
torchtk's offline rule for torchvision weights (``torchtk.plugins._weights``): a local
file, or a pretrained tag whose file is already in the Hugging Face cache (or, for a
timm weight hosted by URL, the torch hub cache); nothing is ever downloaded, and a file
that is not there is one input error saying which file to put where. The file is read
with torchtk's ``read_state_dict`` (``torch.load(weights_only=True)``, safetensors, a
torchtk checkpoint's ``model``) and handed to timm's ``load_pretrained`` as a
``state_dict``, so timm's own key filters, stem adaptation and head replacement apply.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import Field

from torchtk import Params, PathParam
from torchtk.core.errors import UserInputError

from torchtk_timm._catalog import MODELS, TIMM_VERSION

WHERE = "model.params.weights"
# a weights file (relative to the spec file), or a name: DEFAULT or a pretrained tag such as a1_in1k
TimmWeights = Annotated[str, PathParam(names=r"DEFAULT|[A-Za-z0-9_]+")]
Scalar = Union[bool, int, float, str, None, list[Union[int, float]]]


class TimmModelParams(Params):
    """A timm model built with ``timm.create_model(name, num_classes=..., in_chans=...)``.

    ``weights``: null (random initialisation), a local file (a state_dict .pt/.pth,
    .safetensors, a torchtk checkpoint such as a previous run's best.pt), or "DEFAULT" /
    a pretrained tag of this architecture (``tk show model NAME`` lists them), used only
    when its file is already in the Hugging Face cache ($HF_HOME/hub, by default
    ~/.cache/huggingface/hub) or, for weights timm hosts by URL, the torch hub cache:
    torchtk never downloads, and the error says which file to put where.

    With weights, timm replaces the head when num_classes differs from the weights'
    (reported as newly initialised) and adapts the first convolution to in_chans.
    """

    num_classes: Optional[int] = Field(None, ge=0, description=(
        "Outputs of the head (timm's num_classes; 0: no head, pooled features). Null: the weights' number of "
        "classes, or timm's default for the architecture without weights."))
    in_chans: int = Field(3, ge=1, description=(
        "Input channels (timm's in_chans): 1 for grey images; with weights timm adapts the first convolution."))
    weights: Optional[TimmWeights] = Field(None, min_length=1, description=(
        "Null (random init), a local weights file, or DEFAULT / a pretrained tag (e.g. a1_in1k) whose file is "
        "already in the Hugging Face or torch hub cache (never downloaded)."))
    strict_weights: bool = Field(True, description=(
        "A weights key outside the head that does not fit the model is an error (true) or skipped and "
        "reported (false)."))
    drop_rate: Optional[float] = Field(None, ge=0, lt=1, description=(
        "Dropout before the classifier (timm's drop_rate). Null: the architecture's default."))
    drop_path_rate: Optional[float] = Field(None, ge=0, lt=1, description=(
        "Stochastic depth rate (timm's drop_path_rate), for architectures that have it. Null: the default."))
    options: dict[str, Scalar] = Field(default_factory=dict, description=(
        "Other keyword arguments of timm.create_model for this architecture (e.g. global_pool, img_size)."))


def summary(name: str) -> str:
    """One line for ``tk list models``, from the catalog (no timm import)."""
    module, default, tags, size, _classes = MODELS[name]
    if not tags:
        return f"timm {module} ({size} px), no pretrained weights."
    more = f" and {len(tags) - 1} more" if len(tags) > 1 else ""
    return f"timm {module} ({size} px), pretrained: {default}{more}."


def describe(name: str) -> str:
    """The long description ``tk show model NAME`` prints."""
    import inspect

    module, default, tags, size, classes = MODELS[name]
    lines = [f"timm.create_model({name!r}) (timm.models.{module}, timm {TIMM_VERSION}).",
             f"Input: {size} px as its default weights were trained."]
    if tags:
        lines.append(f"Pretrained tags (weights: TAG, or DEFAULT = {default}; {classes or 'no'} head classes): "
                     + ", ".join(tags) + ".")
    else:
        lines.append("No pretrained weights in timm: weights is null or a local file.")
    return "\n".join(lines) + "\n\n" + inspect.cleandoc(TimmModelParams.__doc__ or "")


# -- weights -------------------------------------------------------------------------------------

def _is_name(text: str) -> bool:
    from pathlib import Path

    return text == "DEFAULT" or (text.replace("_", "").isalnum() and not Path(text).exists())


def _cached_file(cfg: Any) -> tuple[Any, str]:
    """The cached file of a pretrained cfg, or None and the sentence saying where to put it."""
    from pathlib import Path
    from urllib.parse import urlparse

    from torchtk.plugins._weights import hub_checkpoints

    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for file_name in names:
            found = try_to_load_from_cache(cfg.hf_hub_id, file_name)
            if isinstance(found, str):
                return Path(found), ""
        return None, (f"Fetch {names[0]} of https://huggingface.co/{cfg.hf_hub_id} into the Hugging Face cache "
                      f"{HF_HUB_CACHE} on a machine online (`hf download {cfg.hf_hub_id} {names[0]}`), or set "
                      f"HF_HOME to a folder that holds it, or give the file's path as weights.")
    if cfg.url:
        file_name = Path(urlparse(cfg.url).path).name
        path = hub_checkpoints() / file_name
        if path.is_file():
            return path, ""
        return None, (f"Put the file {file_name} into {hub_checkpoints()}/ (fetch it from {cfg.url}), or set "
                      f"TORCH_HOME to a folder whose hub/checkpoints/ holds it, or give the file's path as weights.")
    return None, "timm has no file for it; give the path of a weights file."


def _named_weights(name: str, tag: str) -> tuple[dict, str, Any]:
    """The state dict of a pretrained tag from the caches, where it came from, and its cfg."""
    from timm.models import get_pretrained_cfg

    from torchtk.plugins._weights import read_state_dict

    _module, default, tags, _size, _classes = MODELS[name]
    if not tags:
        raise UserInputError(f"{WHERE}: timm's {name} has no pretrained weights; give the path of a weights file")
    tag = default if tag == "DEFAULT" else tag
    if tag not in tags:
        raise UserInputError(f"{WHERE}: timm's {name} has no pretrained tag {tag!r}; available: "
                             f"{', '.join(tags)} (or DEFAULT = {default}, or a path to a weights file)")
    cfg = get_pretrained_cfg(f"{name}.{tag}")
    path, where = _cached_file(cfg)
    if path is None:
        raise UserInputError(f"{WHERE}: the timm weights {name}.{tag} are not cached, and torchtk never downloads "
                             f"them. {where}")
    state, _kind = read_state_dict(path)
    return state, f"timm {name}.{tag} ({path})", cfg


def _head_classes(state: dict, classifier: Any) -> Optional[int]:
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    for head in names:
        weight = state.get(f"{head}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return None


# -- building ------------------------------------------------------------------------------------

def _kwargs(params: TimmModelParams) -> dict:
    kwargs: dict = dict(params.options)
    kwargs["in_chans"] = params.in_chans
    for key in ("drop_rate", "drop_path_rate"):
        if getattr(params, key) is not None:
            kwargs[key] = getattr(params, key)
    return kwargs


def _create(name: str, **kwargs: Any):
    """``timm.create_model``, its argument errors as input errors naming the params."""
    import timm

    try:
        return timm.create_model(name, **kwargs)
    except TypeError as exc:
        raise UserInputError(f"model.params: timm's {name} does not take these arguments: {exc} (drop_rate, "
                             f"drop_path_rate and options are passed to timm.create_model)") from None


def build(name: str, params: TimmModelParams):
    """The timm model, with the weights loaded through timm's ``load_pretrained``."""
    from timm.models import get_pretrained_cfg

    from torchtk.plugins._weights import add_report, read_state_dict

    kwargs = _kwargs(params)
    if params.weights is None:
        if params.num_classes is not None:
            kwargs["num_classes"] = params.num_classes
        model = _create(name, pretrained=False, **kwargs)
        add_report(model, f"weights: none (timm {name} randomly initialised)")
        return model
    if _is_name(params.weights):
        state, source, cfg = _named_weights(name, params.weights)
        overlay = {"state_dict": state}
        kwargs["tagged"] = f"{name}.{cfg.tag}"  # timm.create_model("resnet10t.c3_in1k"): that tag's cfg
    else:
        state, kind = read_state_dict(params.weights)
        source = f"{params.weights} ({kind})"
        cfg = get_pretrained_cfg(name)
        stem = next((v for v in state.values() if v.ndim == 4), None)
        overlay = {"state_dict": state, "input_size": (int(stem.shape[1]) if stem is not None else 3, 224, 224)}
        overlay["num_classes"] = _head_classes(state, getattr(cfg, "classifier", None)) or (
            params.num_classes if params.num_classes is not None else getattr(cfg, "num_classes", None) or 1000)
    file_classes = overlay.get("num_classes", getattr(cfg, "num_classes", 1000))
    kwargs["num_classes"] = params.num_classes if params.num_classes is not None else file_classes
    return _load(name, kwargs, overlay, source, params, file_classes)


def _load(name: str, kwargs: dict, overlay: dict, source: str, params: TimmModelParams, file_classes: int):
    from torchtk.plugins._weights import add_report

    before = len(overlay["state_dict"])
    tagged = kwargs.pop("tagged", name)
    try:
        model = _create(tagged, pretrained=True, pretrained_strict=params.strict_weights,
                        pretrained_cfg_overlay=overlay, **kwargs)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{WHERE}: {source} does not fit timm's {name}: {first} (strict_weights: false "
                             f"loads the keys that fit)") from None
    lines = [f"weights: {before} tensors read from {source}, loaded by timm's load_pretrained"]
    if kwargs["num_classes"] != file_classes:
        lines.append(f"head: newly initialised ({kwargs['num_classes']} classes; the weights have {file_classes})")
    if params.in_chans != 3:
        lines.append(f"first convolution: adapted by timm to {params.in_chans} input channels")
    add_report(model, *lines)
    state = overlay["state_dict"]  # timm pops a head of another size from it
    model.torchtk_loaded_parameters = frozenset(
        n for n, p in model.named_parameters() if n in state and tuple(state[n].shape) == tuple(p.shape))
    return model
