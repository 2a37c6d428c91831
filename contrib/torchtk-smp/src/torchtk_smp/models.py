"""segmentation_models_pytorch architectures with any encoder, through ``smp.create_model``.

Each architecture's params are its constructor arguments from the catalog (decoder
channels, attention, output stride, ...) plus the common ones: ``encoder_name`` (checked
against smp's encoder list, as data, or ``tu-<timm model>``), ``in_channels``,
``classes`` (the output logits: no activation), ``encoder_weights`` and ``weights``.

Weights follow torchtk's offline rule: ``encoder_weights`` is null by default (random
init); a weights name such as "imagenet" is used only when smp's file is already in the
Hugging Face cache, and a local file works: both are loaded into ``model.encoder`` at 3
input channels, then smp's ``set_in_channels(..., pretrained=True)`` adapts the first
convolution, as smp does after a download. ``weights`` is a whole-model file (a previous
run's best.pt): torchtk's ``load_state`` copies it in, a segmentation head of another
size is freshly initialised and reported.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

from pydantic import Field, field_validator

from torchtk import Params, PathParam
from torchtk.core.errors import UserInputError

from torchtk_smp._catalog import ARCHITECTURES, ENCODERS, SMP_VERSION

EncoderWeights = Annotated[str, PathParam(names=r"[A-Za-z0-9_\-+]+")]  # a weights name, else a path
WeightsFile = Annotated[str, PathParam()]
OPTIONAL_INT = {"upsampling"}
OPTIONAL_INT_LIST = {"encoder_output_indices"}


def _plain(text: str) -> str:
    """smp's reST first paragraph as one plain sentence: ```U-Net`__`` -> ``U-Net``."""
    text = re.sub(r"`([^`]+)`__", r"\1", text).replace("*", "")
    return text.split(". ")[0].rstrip(".") + "."


def summary(name: str) -> str:
    cls, doc, _args = ARCHITECTURES[name]
    return f"smp {cls}: {_plain(doc)}"


def describe(name: str) -> str:
    import inspect

    cls, doc, args = ARCHITECTURES[name]
    return (f"segmentation_models_pytorch.{cls} (smp {SMP_VERSION}), built with smp.create_model({name!r}, ...). "
            f"{_plain(doc)}\n\nEncoders: {', '.join(ENCODERS)}, or any timm model as 'tu-NAME'.\n\n"
            + inspect.cleandoc(_Common.__doc__ or ""))


class _Common(Params):
    """An smp segmentation model; its output is ``classes`` logits per pixel (no activation).

    encoder_weights: null (random init, the default), a local file of encoder weights, or
    one of the encoder's weights names (such as "imagenet") whose file is already in the
    Hugging Face cache: torchtk never downloads, and the error says which file to put where.
    weights: a whole-model file, such as a previous run's best.pt.
    """

    encoder_name: str = Field("resnet34", min_length=1, description=(
        "The encoder: one of smp's encoders (tk show model unet lists them) or 'tu-<timm model>'."))
    encoder_weights: Optional[EncoderWeights] = Field(None, min_length=1, description=(
        "Null (random init), a local encoder weights file, or a weights name of the encoder (e.g. 'imagenet') "
        "whose file is already in the Hugging Face cache (never downloaded)."))
    weights: Optional[WeightsFile] = Field(None, min_length=1, description=(
        "A whole-model weights file (a state_dict or a torchtk checkpoint such as a previous run's best.pt)."))
    in_channels: int = Field(3, ge=1, description="Input channels (1 for grey images).")
    classes: int = Field(1, ge=1, description="Output channels: 1 for a binary mask, C for C classes or labels.")

    @field_validator("encoder_name")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        from torchtk.core.registry import closest

        if value in ENCODERS or (value.startswith("tu-") and len(value) > 3):
            return value
        close = closest(value, list(ENCODERS))
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown smp encoder {value!r}.{hint} Valid: {', '.join(ENCODERS)}, or 'tu-<timm model>'")


def _field(cls: str, arg: str, default: Any) -> tuple[Any, Any]:
    text = f"{cls}'s {arg} (default {default!r})."
    if isinstance(default, bool):
        return bool, Field(default, description=text)
    if isinstance(default, list):
        item = int if all(isinstance(v, int) for v in default) else float
        return list[item], Field(default_factory=lambda d=default: list(d), min_length=1, description=text)
    if default is None:
        kind = int if arg in OPTIONAL_INT else list[int] if arg in OPTIONAL_INT_LIST else str
        return Optional[kind], Field(None, description=text + " Null: the architecture's default.")
    if isinstance(default, float):
        return float, Field(default, ge=0, description=text)
    if isinstance(default, int):
        return int, Field(default, ge=1, description=text)
    return str, Field(default, min_length=1, description=text)


def params_model(name: str) -> type[Params]:
    """The params model of one architecture: the common fields plus its constructor's."""
    from pydantic import create_model

    cls, doc, args = ARCHITECTURES[name]
    fields = {arg: _field(cls, arg, default) for arg, default in args.items() if arg != "aux_params"}
    model = create_model(f"Smp{cls}Params", __base__=_Common, **fields)
    model.__doc__ = _Common.__doc__
    return model


# -- building ------------------------------------------------------------------------------------

def _cached_encoder_file(encoder: str, weights: str):
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    available = ENCODERS.get(encoder, {})
    if encoder.startswith("tu-"):
        raise UserInputError(f"model.params.encoder_weights: a 'tu-' encoder takes a local weights file (or null); "
                             f"timm's weights names belong in the encoder name, which torchtk would download")
    if weights not in available:
        raise UserInputError(f"model.params.encoder_weights: encoder {encoder} has no weights {weights!r}; "
                             f"available: {', '.join(available) or 'none'} (or a path to a weights file)")
    repo_id, revision = available[weights]
    found = try_to_load_from_cache(repo_id, "model.safetensors", revision=revision)
    if not isinstance(found, str):
        raise UserInputError(
            f"model.params.encoder_weights: the {encoder} {weights} weights are not in the Hugging Face cache "
            f"{HF_HUB_CACHE}, and torchtk never downloads them. Fetch model.safetensors of "
            f"https://huggingface.co/{repo_id} (revision {revision}) on a machine online "
            f"(`hf download {repo_id} model.safetensors --revision {revision}`), or set HF_HOME to a folder that "
            f"holds it, or give the file's path as encoder_weights.")
    return found


def _load_encoder(model: Any, params: Params) -> str:
    """Encoder weights into ``model.encoder`` (built at 3 channels), then smp's channel adaptation."""
    from torchtk.plugins._weights import load_state, read_state_dict

    source = params.encoder_weights
    is_name = bool(re.fullmatch(r"[A-Za-z0-9_\-+]+", source)) and "." not in source
    path = _cached_encoder_file(params.encoder_name, source) if is_name else source
    state, kind = read_state_dict(path)
    where = f"smp {params.encoder_name} {source} ({path})" if is_name else f"{source} ({kind})"
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # smp's encoders drop the classifier
    try:
        load_state(model.encoder, state, source=where)
    except UserInputError as exc:
        raise UserInputError(str(exc).replace("model.params.weights", "model.params.encoder_weights", 1)) from None
    model.encoder.set_in_channels(params.in_channels, pretrained=True)
    model.torchtk_loaded_parameters = frozenset(f"encoder.{n}" for n, _ in model.encoder.named_parameters())
    return where


def build(name: str, params: Params):
    import segmentation_models_pytorch as smp

    from torchtk.plugins._weights import add_report, load_weights

    kwargs = params.model_dump(exclude={"encoder_weights", "weights"})
    in_channels = kwargs.pop("in_channels")
    encoder_first = params.encoder_weights is not None
    try:
        model = smp.create_model(name, encoder_weights=None, in_channels=3 if encoder_first else in_channels,
                                 **kwargs)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise UserInputError(f"model.params: smp cannot build {name} with encoder {params.encoder_name!r}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") \
            from None
    lines = [f"encoder weights: none (smp {name} with {params.encoder_name} randomly initialised)"]
    if encoder_first:
        lines = [f"encoder weights: loaded from {_load_encoder(model, params)}"]
    add_report(model, *lines)
    if params.weights is not None:
        load_weights(model, params.weights, head=["segmentation_head"])
    return model
